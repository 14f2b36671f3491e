"""pyspeaker.features: Kaldi conf parsing, fbank/MFCC/log-mel against torchaudio (and Kaldi's C++
code via kaldi-native-fbank when installed), VAD, CMN, and the FeatureExtractor pipeline."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.features import FeatureConfig, FeatureExtractor, load_feature_config
from pyspeaker.features import cmvn, kaldi, logmel, vad
from pyspeaker.features.config import FEATURE_VERSION

REPO = Path(__file__).resolve().parents[1]
SR = 16000

torch.set_num_threads(1)


# ---- audio -----------------------------------------------------------------------------------
def speech_like(seconds: float, seed: int = 0, silence_s: float = 0.0) -> np.ndarray:
    """Harmonics with a wandering pitch, syllable-rate amplitude modulation and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    x *= 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    x = 0.1 * x + 0.003 * rng.standard_normal(t.size)
    if silence_s:
        quiet = 0.0005 * rng.standard_normal(int(silence_s * SR))
        x = np.concatenate([quiet, x, quiet[::-1]])
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> np.ndarray:
    """3.3 s of speech-like audio, written as 16-bit PCM and read back (what a corpus gives)."""
    path = tmp_path_factory.mktemp("audio") / "utt.wav"
    sf.write(path, speech_like(3.3, seed=1, silence_s=0.4), SR, subtype="PCM_16")
    samples, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return samples


def ta_kaldi(fn: str, samples: np.ndarray, **opts) -> torch.Tensor:
    import torchaudio.compliance.kaldi as ta

    x = torch.from_numpy(samples)[None] * 32768.0
    return getattr(ta, fn)(x, dither=0.0, **opts)


# ---- conf files ------------------------------------------------------------------------------
def test_repo_confs_parse():
    fb = load_feature_config(REPO / "conf/fbank.conf")
    assert (fb.kind, fb.num_mel_bins, fb.dim, fb.dither, fb.sample_frequency) == ("fbank", 80, 80, 0.0, 16000.0)
    assert (fb.window_size, fb.window_shift, fb.padded_window_size) == (400, 160, 512)
    mf = load_feature_config(REPO / "conf/mfcc.conf", vad_conf=REPO / "conf/vad.conf", vad=True)
    # Kaldi egs/voxceleb/v2/conf/mfcc.conf + vad.conf
    assert (mf.kind, mf.num_mel_bins, mf.num_ceps, mf.low_freq, mf.effective_high_freq) == ("mfcc", 30, 30, 20.0, 7600.0)
    assert (mf.snip_edges, mf.use_energy, mf.dim) == (False, True, 30)
    assert (mf.vad_energy_threshold, mf.vad_energy_mean_scale, mf.vad_proportion_threshold,
            mf.vad_frames_context) == (5.5, 0.5, 0.12, 2)
    lm = load_feature_config(REPO / "conf/logmel.conf")
    assert (lm.kind, lm.num_mel_bins, lm.padded_window_size, lm.window_type, lm.snip_edges) == (
        "logmel", 40, 512, "hamming", False)


def test_conf_syntax(tmp_path):
    conf = tmp_path / "fbank_test.conf"
    conf.write_text("# a comment\n\n--num-mel-bins=64   # trailing comment\n  --snip-edges=false\n"
                    "--use-energy\n--raw-energy=F\n--high-freq=-400\n")
    cfg = load_feature_config(conf)
    assert (cfg.kind, cfg.num_mel_bins, cfg.snip_edges, cfg.use_energy, cfg.raw_energy) == ("fbank", 64, False, True, False)
    assert cfg.dim == 65 and cfg.high_freq == -400.0 and cfg.source == str(conf)


@pytest.mark.parametrize("line, message", [
    ("num-mel-bins=80", "expected a Kaldi option line '--name=value', got 'num-mel-bins=80'"),
    ("--num-mel-bins 80", "expected a Kaldi option line '--name=value'"),
    ("--num-mel-bins=eighty", "bad value for --num-mel-bins: 'eighty' is not an integer"),
    ("--snip-edges=maybe", "bad value for --snip-edges: expected true or false, got 'maybe'"),
    ("--num-ceps=13", "unknown option --num-ceps; valid options here: --sample-frequency, --frame-length"),
    ("--frame-length", "option --frame-length needs a value"),
])
def test_conf_errors_name_file_and_line(tmp_path, line, message):
    conf = tmp_path / "fbank.conf"
    conf.write_text("# header\n--sample-frequency=16000\n" + line + "\n")
    with pytest.raises(DataError) as err:
        load_feature_config(conf)
    assert err.value.line == 3 and err.value.path == str(conf)
    assert str(err.value).startswith(f"{conf}:3: {message}")


def test_unknown_option_lists_valid_ones(tmp_path):
    conf = tmp_path / "mfcc.conf"
    conf.write_text("--allow-downsample=true\n")
    with pytest.raises(DataError, match=r"unknown option --allow-downsample; valid options here: .*--num-ceps") as err:
        load_feature_config(conf)
    assert "--cepstral-lifter" in str(err.value) and err.value.line == 1


def test_vad_conf_only_takes_vad_options(tmp_path):
    conf = tmp_path / "vad.conf"
    conf.write_text("--vad-energy-threshold=5.5\n--num-mel-bins=3\n")
    with pytest.raises(DataError, match=r"vad.conf:2: unknown option --num-mel-bins; valid options here: --vad-energy-threshold"):
        load_feature_config(REPO / "conf/fbank.conf", vad_conf=conf)


def test_kind_from_name_or_type(tmp_path):
    conf = tmp_path / "feats.conf"
    conf.write_text("--num-mel-bins=40\n")
    with pytest.raises(ConfigError, match=r"cannot tell the feature type from the file name 'feats.conf'; give --type"):
        load_feature_config(conf)
    assert load_feature_config(conf, kind="logmel").kind == "logmel"
    assert load_feature_config(conf, kind="mfcc").dim == 13  # Kaldi's default --num-ceps


def test_invalid_combinations(tmp_path):
    with pytest.raises(ConfigError, match="--num-ceps=40 must be between 1 and --num-mel-bins=30"):
        FeatureConfig(kind="mfcc", num_mel_bins=30, num_ceps=40)
    with pytest.raises(ConfigError, match="--window-type=povey is not one of hamming, hanning, rectangular"):
        FeatureConfig(kind="logmel", window_type="povey")
    with pytest.raises(ConfigError, match="bad mel range"):
        FeatureConfig(kind="fbank", low_freq=9000)
    with pytest.raises(ConfigError, match="unknown cmn 'global'"):
        FeatureConfig(cmn="global")
    conf = tmp_path / "fbank.conf"
    conf.write_text("--high-freq=9000\n")
    with pytest.raises(ConfigError) as err:
        load_feature_config(conf)
    assert str(err.value).startswith(f"{conf}: bad mel range")


# ---- identity --------------------------------------------------------------------------------
def test_feat_id_stable_and_sensitive(tmp_path):
    cfg = load_feature_config(REPO / "conf/fbank.conf")
    fid = cfg.feat_id()
    assert re.fullmatch(r"fbank_[0-9a-f]{8}", fid)
    assert load_feature_config(REPO / "conf/fbank.conf").feat_id() == fid
    # a copy under another name with the same options is the same store
    other = tmp_path / "fbank80.conf"
    other.write_text((REPO / "conf/fbank.conf").read_text())
    assert load_feature_config(other).feat_id() == fid
    changes = dict(num_mel_bins=64, sample_frequency=8000.0, frame_length=20.0, frame_shift=12.0,
                   low_freq=40.0, high_freq=7000.0, snip_edges=False, dither=1.0, preemphasis_coefficient=0.9,
                   remove_dc_offset=False, window_type="povey", round_to_power_of_two=False,
                   use_energy=True, use_log_fbank=False, use_power=False,
                   vad=True, cmn="utterance")
    ids = {fid}
    for name, value in changes.items():
        new = cfg.replace(**{name: value})
        assert new.feat_id() != fid, name
        ids.add(new.feat_id())
    assert len(ids) == len(changes) + 1
    vad_cfg = cfg.replace(vad=True)
    for name, value in dict(vad_energy_threshold=5.5, vad_energy_mean_scale=0.0, vad_frames_context=2,
                            vad_proportion_threshold=0.12).items():
        assert vad_cfg.replace(**{name: value}).feat_id() != vad_cfg.feat_id(), name
    sliding = cfg.replace(cmn="sliding")
    assert sliding.replace(cmn_window=200).feat_id() != sliding.feat_id()
    assert sliding.replace(norm_vars=True).feat_id() != sliding.feat_id()
    # options that cannot change the numbers do not split stores
    assert cfg.replace(high_freq=-0.0).feat_id() == cfg.replace(high_freq=8000.0).feat_id() == fid
    assert cfg.replace(source="elsewhere.conf").feat_id() == fid
    assert cfg.replace(cmn_window=200).feat_id() == fid  # no sliding CMN
    assert cfg.replace(htk_compat=True).feat_id() == fid  # only moves the energy column
    assert cfg.replace(use_energy=True, htk_compat=True).feat_id() != cfg.replace(use_energy=True).feat_id()
    mf = load_feature_config(REPO / "conf/mfcc.conf")
    assert mf.feat_id().startswith("mfcc_") and mf.replace(high_freq=-400.0).feat_id() == mf.feat_id()
    assert mf.replace(num_ceps=20).feat_id() != mf.feat_id()
    assert mf.replace(cepstral_lifter=0.0).feat_id() != mf.feat_id()


def test_dict_round_trip():
    cfg = load_feature_config(REPO / "conf/mfcc.conf", vad_conf=REPO / "conf/vad.conf", vad=True,
                              cmn="sliding", cmn_window=200)
    d = cfg.to_dict()
    assert d["feat_id"] == cfg.feat_id() and d["feature_version"] == FEATURE_VERSION
    assert d["num_ceps"] == 30 and d["cmn"] == "sliding" and d["vad_frames_context"] == 2
    back = FeatureConfig.from_dict(d)
    assert back == cfg and back.feat_id() == cfg.feat_id()
    with pytest.raises(ConfigError, match="unknown feature setting"):
        FeatureConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="feature version 0"):
        FeatureConfig.from_dict({**d, "feature_version": 0})


# ---- numbers against torchaudio.compliance.kaldi ----------------------------------------------
FBANK_CASES = [
    dict(num_mel_bins=80),
    dict(num_mel_bins=80, window_type="hamming", snip_edges=False),
    dict(num_mel_bins=40, use_energy=True, snip_edges=False),
    dict(num_mel_bins=23, use_energy=True, raw_energy=False, energy_floor=1.0, htk_compat=True),
    dict(num_mel_bins=64, low_freq=50.0, high_freq=-400.0, window_type="hanning", preemphasis_coefficient=0.0),
    dict(num_mel_bins=30, remove_dc_offset=False, window_type="rectangular", round_to_power_of_two=False),
    dict(num_mel_bins=40, window_type="blackman", frame_length=20.0, frame_shift=12.5, use_power=False),
]


@pytest.mark.parametrize("opts", FBANK_CASES)
def test_fbank_matches_torchaudio(wav, opts):
    ours = kaldi.fbank(torch.from_numpy(wav), FeatureConfig(kind="fbank", **opts))
    ref = ta_kaldi("fbank", wav, energy_floor=opts.get("energy_floor", 0.0),
                   **{k: v for k, v in opts.items() if k != "energy_floor"})
    assert ours.shape == ref.shape
    diff = (ours - ref).abs().max().item()
    # and against the same computation in float64: we are as close to it as torchaudio is
    exact = ta_kaldi("fbank", wav.astype(np.float64), energy_floor=opts.get("energy_floor", 0.0),
                     **{k: v for k, v in opts.items() if k != "energy_floor"})
    err, ref_err = (ours - exact).abs().max().item(), (ref - exact).abs().max().item()
    print(f"fbank {opts}: max |diff| = {diff:.2e}; vs float64: ours {err:.2e}, torchaudio {ref_err:.2e}")
    assert diff < 1e-3 and err < 1e-3


def test_linear_fbank_matches_torchaudio(wav):
    opts = dict(num_mel_bins=40, use_log_fbank=False)
    ours = kaldi.fbank(torch.from_numpy(wav), FeatureConfig(kind="fbank", **opts))
    ref = ta_kaldi("fbank", wav, energy_floor=0.0, **opts)
    rel = ((ours - ref).abs() / ref.abs().clamp_min(1e-3)).max().item()
    assert rel < 1e-4


MFCC_CASES = [
    dict(num_mel_bins=30, num_ceps=30, low_freq=20.0, high_freq=7600.0, snip_edges=False),  # Kaldi VoxCeleb
    dict(),  # Kaldi defaults: 23 mel, 13 ceps, energy
    dict(num_mel_bins=40, num_ceps=20, use_energy=False, htk_compat=True),
    dict(num_mel_bins=40, num_ceps=40, cepstral_lifter=0.0, window_type="hamming", use_energy=True, htk_compat=True),
]


@pytest.mark.parametrize("opts", MFCC_CASES)
def test_mfcc_matches_torchaudio(wav, opts):
    cfg = FeatureConfig(kind="mfcc", **opts)
    ours = kaldi.mfcc(torch.from_numpy(wav), cfg)
    ref = ta_kaldi("mfcc", wav, energy_floor=0.0, use_energy=cfg.use_energy, **{k: v for k, v in opts.items() if k != "use_energy"})
    assert ours.shape == ref.shape
    diff = (ours - ref).abs().max().item()
    print(f"mfcc {opts}: max |diff| = {diff:.2e}")
    # liftered cepstra reach ~100; torchaudio builds its DCT in float32, we (and Kaldi) in double
    assert diff < 1e-3


def test_extractor_on_real_file_matches_torchaudio(wav):
    ext = FeatureExtractor(load_feature_config(REPO / "conf/fbank.conf"))
    feats = ext(wav, SR)
    ref = ta_kaldi("fbank", wav, num_mel_bins=80, window_type="hamming", energy_floor=0.0).numpy()
    assert feats.dtype == np.float32 and feats.shape == ref.shape == (1 + (len(wav) - 400) // 160, 80)
    assert np.abs(feats - ref).max() < 1e-3
    # int16 input is the same audio
    as_int16 = np.round(wav * 32768).astype(np.int16)
    np.testing.assert_array_equal(ext(as_int16, SR), feats)


def test_kaldi_native_fbank(wav):
    knf = pytest.importorskip("kaldi_native_fbank")
    for snip, bins, window in [(True, 80, "hamming"), (False, 80, "povey"), (False, 40, "povey")]:
        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = snip
        opts.frame_opts.window_type = window
        opts.mel_opts.num_bins = bins
        comp = knf.OnlineFbank(opts)
        comp.accept_waveform(SR, (wav * 32768).tolist())
        comp.input_finished()
        ref = np.stack([comp.get_frame(i) for i in range(comp.num_frames_ready)])
        ours = kaldi.fbank(torch.from_numpy(wav), FeatureConfig(num_mel_bins=bins, snip_edges=snip, window_type=window))
        assert ours.shape == ref.shape
        d = np.abs(ours.numpy() - ref)
        # float32 FFT rounding is relative to the frame's energy: bins far below the frame's
        # loudest differ by up to ~1e-3 between any two float32 implementations
        loud = ref >= ref.max(axis=1, keepdims=True) - 10.0
        print(f"kaldi-native-fbank snip_edges={snip} bins={bins} {window}: max |diff| = {d.max():.2e} "
              f"(bins within 10 nats of the frame max: {d[loud].max():.2e})")
        assert d[loud].max() < 1e-3 and d.max() < 2e-3


# ---- log-mel ---------------------------------------------------------------------------------
@pytest.mark.parametrize("opts, window_fn, n_mels", [
    (dict(), torch.hamming_window, 40),
    (dict(num_mel_bins=64), torch.hamming_window, 64),
    (dict(window_type="hanning"), torch.hann_window, 40),  # VGGVox
])
def test_logmel_matches_melspectrogram(wav, opts, window_fn, n_mels):
    import torchaudio

    ref_fn = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                                  window_fn=window_fn, n_mels=n_mels)
    x = torch.from_numpy(wav)
    ref = torch.log(ref_fn(x) + 1e-6).T
    ours = logmel.logmel(x, FeatureConfig(kind="logmel", **opts))
    assert ours.shape == ref.shape == (1 + len(wav) // 160, n_mels)
    diff = (ours - ref).abs().max().item()
    print(f"logmel {opts}: max |diff| = {diff:.2e}")
    assert diff < 1e-5


def test_logmel_preemphasis_as_resnetse34v2(wav):
    import torchaudio

    x = torch.from_numpy(wav)
    # voxceleb_trainer's PreEmphasis: reflect pad 1 on the left, conv with [-0.97, 1]
    pre = torch.nn.functional.conv1d(torch.nn.functional.pad(x[None, None], (1, 0), "reflect"),
                                     torch.tensor([[[-0.97, 1.0]]]))[0, 0]
    ref_fn = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, win_length=400, hop_length=160,
                                                  window_fn=torch.hamming_window, n_mels=64)
    ref = torch.log(ref_fn(pre) + 1e-6).T
    ours = logmel.logmel(x, FeatureConfig(kind="logmel", num_mel_bins=64, preemphasis_coefficient=0.97))
    assert (ours - ref).abs().max().item() < 1e-5
    assert torch.allclose(logmel.preemphasis(x, 0.97)[:3],
                          torch.stack([x[0] - 0.97 * x[1], x[1] - 0.97 * x[0], x[2] - 0.97 * x[1]]))


# ---- batching --------------------------------------------------------------------------------
@pytest.mark.parametrize("conf, extra", [
    ("fbank.conf", {}),
    ("mfcc.conf", dict(vad=True, cmn="sliding")),
    ("logmel.conf", dict(vad=True, cmn="utterance")),
])
def test_batch_equals_single(conf, extra):
    cfg = load_feature_config(REPO / "conf" / conf, vad_conf=REPO / "conf/vad.conf", **extra)
    ext = FeatureExtractor(cfg)
    utts = [speech_like(s, seed=i, silence_s=0.3) for i, s in enumerate([0.5, 2.0, 1.3, 0.031])]
    batch = ext.batch(utts, SR)
    assert len(batch) == len(utts)
    for u, b in zip(utts, batch):
        single = ext(u, SR)
        assert b.shape == single.shape and b.shape[1] == cfg.dim
        np.testing.assert_allclose(b, single, rtol=0, atol=1e-5)
    assert ext.batch([], SR) == []


# ---- VAD -------------------------------------------------------------------------------------
def kaldi_vad_loop(log_energy, threshold, mean_scale, context, proportion):
    """ComputeVadEnergy as written in Kaldi's voice-activity-detection.cc (float32 arithmetic)."""
    e = np.asarray(log_energy, dtype=np.float32)
    T = len(e)
    thr = np.float32(threshold)
    if mean_scale != 0:
        thr = np.float32(thr + np.float32(mean_scale) * np.float32(np.float32(e.sum(dtype=np.float64)) / np.float32(T)))
    out = np.zeros(T, dtype=bool)
    for t in range(T):
        num = den = 0
        for t2 in range(t - context, t + context + 1):
            if 0 <= t2 < T:
                den += 1
                num += int(e[t2] > thr)
        out[t] = np.float32(num) >= np.float32(den) * np.float32(proportion)
    return out


def test_vad_matches_kaldi_loop():
    rng = np.random.default_rng(3)
    e = np.concatenate([rng.normal(2, 2, 50), rng.normal(14, 3, 200), rng.normal(3, 2, 30)])
    for args in [(5.5, 0.5, 2, 0.12), (5.0, 0.5, 0, 0.6), (9.0, 0.0, 5, 0.5), (4.0, 1.0, 3, 0.9)]:
        np.testing.assert_array_equal(vad.compute_vad(e, *args), kaldi_vad_loop(e, *args))


def test_vad_marks_tone_between_silences():
    rng = np.random.default_rng(0)
    sil = (0.0003 * rng.standard_normal(SR)).astype(np.float32)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    x = np.concatenate([sil, tone, sil])
    for conf in ["mfcc.conf", "fbank.conf", "logmel.conf"]:
        cfg = load_feature_config(REPO / "conf" / conf, vad_conf=REPO / "conf/vad.conf", vad=True)
        raw = FeatureExtractor(cfg.replace(vad=False))(x, SR)
        kept = FeatureExtractor(cfg)(x, SR)
        # about one second of frames survives: the tone, plus frames overlapping its edges and
        # the +/-2 frames of VAD context
        assert 98 <= kept.shape[0] <= 110, (conf, kept.shape)
        if cfg.kind == "mfcc":
            voiced = vad.vad_from_config(raw[:, 0], cfg)
        elif cfg.kind == "fbank":
            _, energy = kaldi.compute([torch.from_numpy(x)], cfg)
            voiced = vad.vad_from_config(energy[0].numpy(), cfg)
        else:
            _, energy = logmel.compute([torch.from_numpy(x)], cfg, need_energy=True)
            voiced = vad.vad_from_config(energy[0].numpy(), cfg)
        mid = len(voiced) // 2
        assert voiced[mid - 40:mid + 40].all() and not voiced[:80].any() and not voiced[-80:].any(), conf
        np.testing.assert_array_equal(kept, raw[voiced])


def test_no_voiced_frame_gives_empty_array():
    cfg = load_feature_config(REPO / "conf/mfcc.conf", vad=True).replace(vad_energy_threshold=1e4)
    out = FeatureExtractor(cfg)(speech_like(1.0), SR)
    assert out.shape == (0, 30) and out.dtype == np.float32


# ---- CMN -------------------------------------------------------------------------------------
def kaldi_sliding_cmn_loop(feats, cmn_window, center, min_window, norm_vars):
    """SlidingWindowCmn from Kaldi's feature-functions.cc, frame by frame, in double."""
    x = np.asarray(feats, dtype=np.float64)
    T, D = x.shape
    out = np.zeros_like(x)
    for t in range(T):
        if center:
            start = t - cmn_window // 2
            end = start + cmn_window
        else:
            start = t - cmn_window
            end = t + 1
        if start < 0:
            end -= start
            start = 0
        if not center and end > t:
            end = max(t + 1, min_window)
        if end > T:
            start -= end - T
            end = T
            if start < 0:
                start = 0
        n = end - start
        s = x[start:end].sum(0)
        out[t] = x[t] - s / n
        if norm_vars:
            if n == 1:
                out[t] = 0.0
            else:
                var = (x[start:end] ** 2).sum(0) / n - (s / n) ** 2
                out[t] *= np.maximum(var, 1e-10) ** -0.5
    return out


@pytest.mark.parametrize("T, window, center, norm_vars", [
    (700, 300, True, False), (700, 301, True, True), (120, 300, True, False), (1, 300, True, True),
    (500, 300, False, False), (500, 50, False, True), (40, 300, False, False),
])
def test_sliding_cmn_matches_kaldi_loop(T, window, center, norm_vars):
    rng = np.random.default_rng(T + window)
    feats = (rng.standard_normal((T, 5)) * 3 + np.linspace(0, 10, T)[:, None]).astype(np.float32)
    ours = cmvn.sliding_cmn(torch.from_numpy(feats), window, center=center, norm_vars=norm_vars).numpy()
    ref = kaldi_sliding_cmn_loop(feats, window, center, 100, norm_vars)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_window_bounds_stay_full_at_edges():
    start, end = cmvn.window_bounds(1000, 300, center=True)
    assert (start[0].item(), end[0].item()) == (0, 300)  # shifted right at the start
    assert (start[500].item(), end[500].item()) == (350, 650)  # centred
    assert (start[-1].item(), end[-1].item()) == (700, 1000)  # shifted left at the end
    assert bool(((end - start) == 300).all())


def test_utterance_cmn():
    rng = np.random.default_rng(0)
    feats = torch.from_numpy((rng.standard_normal((200, 4)) * 2 + 5).astype(np.float32))
    out = cmvn.utterance_cmn(feats)
    assert out.mean(0).abs().max() < 1e-5
    normed = cmvn.utterance_cmn(feats, norm_vars=True)
    assert (normed.std(0, unbiased=False) - 1).abs().max() < 1e-5


def test_pipeline_order_cmn_then_vad():
    """features -> CMN over all frames -> unvoiced frames dropped (VAD on raw energies)."""
    base = load_feature_config(REPO / "conf/mfcc.conf", vad_conf=REPO / "conf/vad.conf")
    x = speech_like(4.0, seed=5, silence_s=0.5)
    raw = FeatureExtractor(base)(x, SR)
    voiced = vad.vad_from_config(raw[:, 0], base)
    assert 0 < voiced.sum() < len(voiced)
    full = FeatureExtractor(base.replace(vad=True, cmn="sliding"))(x, SR)
    expected = cmvn.sliding_cmn(torch.from_numpy(raw), 300).numpy()[voiced]
    np.testing.assert_allclose(full, expected, atol=1e-5)


# ---- errors, dither --------------------------------------------------------------------------
def test_sample_rate_mismatch_message():
    ext = FeatureExtractor(load_feature_config(REPO / "conf/fbank.conf"))
    with pytest.raises(DataError) as err:
        ext(np.zeros(8000, dtype=np.float32), 8000)
    assert str(err.value) == f"sample rate 8000 Hz does not match --sample-frequency=16000 of {REPO / 'conf/fbank.conf'}"


def test_too_short_message():
    ext = FeatureExtractor(load_feature_config(REPO / "conf/fbank.conf"))
    with pytest.raises(DataError, match=r"^too short: 399 samples \(one frame needs 400"):
        ext(np.zeros(399, dtype=np.float32), SR)
    assert ext(np.zeros(400, dtype=np.float32), SR).shape == (1, 80)
    mf = FeatureExtractor(load_feature_config(REPO / "conf/mfcc.conf"))  # snip-edges=false
    assert mf(np.zeros(80, dtype=np.float32), SR).shape == (1, 30)
    with pytest.raises(DataError, match=r"^too short: 79 samples"):
        mf(np.zeros(79, dtype=np.float32), SR)
    with pytest.raises(DataError, match=r"^too short: 256 samples"):
        FeatureExtractor(load_feature_config(REPO / "conf/logmel.conf"))(np.zeros(256, dtype=np.float32), SR)
    for conf, n in [("fbank.conf", 399), ("mfcc.conf", 79), ("logmel.conf", 256)]:
        e = FeatureExtractor(load_feature_config(REPO / "conf" / conf))
        assert e.num_frames(n) == 0 and e.num_frames(n + 1) >= 1
        assert e.num_frames(SR) == e(np.zeros(SR, dtype=np.float32), SR).shape[0]
    with pytest.raises(DataError, match=r"mono"):
        ext(np.zeros((2, 800), dtype=np.float32), SR)


def test_dither_seeded(wav):
    cfg = load_feature_config(REPO / "conf/fbank.conf").replace(dither=1.0)
    a = FeatureExtractor(cfg, seed=7)(wav, SR)
    b = FeatureExtractor(cfg, seed=7)(wav, SR)
    plain = FeatureExtractor(cfg.replace(dither=0.0))(wav, SR)
    np.testing.assert_array_equal(a, b)
    assert 0 < np.abs(a - plain).max() < 5 and np.abs(a - plain).mean() < 0.1


def test_short_signal_reflection_is_kaldi_like():
    """snip-edges=false pads by reflection (x[-1] = x[0]); works even below one frame length."""
    x = np.random.default_rng(1).standard_normal(300).astype(np.float32) * 0.1
    idx = kaldi.reflect_index(torch.arange(-3, 303), 300)
    assert idx[:3].tolist() == [2, 1, 0] and idx[-3:].tolist() == [299, 298, 297]
    cfg = FeatureConfig(kind="fbank", num_mel_bins=23, snip_edges=False)
    assert kaldi.fbank(torch.from_numpy(x), cfg).shape == (2, 23)
