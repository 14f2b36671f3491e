"""import-model --from resemblyzer: Resemblyzer's own pretrained encoder and pyspeaker's import give
the same embeddings of real speech, with the same parameters; the mapping is strict."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pyspeaker.compat.importing import (
    build_imported,
    count_source_parameters,
    write_model_dir,
)
from pyspeaker.compat.resemblyzer import import_resemblyzer
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.models.resemblyzer_lstm import ResemblyzerLSTM, partial_windows

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "corpora" / "fsdd" / "recordings"
TOL = 1e-4


def fsdd_16k(name: str) -> np.ndarray:
    """An FSDD recording (8 kHz) resampled to 16 kHz, float32 in [-1, 1]."""
    import soundfile as sf
    import torchaudio.functional as AF

    path = FSDD / f"{name}.wav"
    if not path.is_file():
        pytest.skip(f"FSDD recording {path} is not there")
    x, rate = sf.read(path, dtype="float32")
    assert rate == 8000
    return AF.resample(torch.from_numpy(x), 8000, 16000).numpy()


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("resemblyzer", reason="the parity tests run Resemblyzer's own code (pip install resemblyzer)")
    from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, encoder):
    return write_model_dir(import_resemblyzer(), tmp_path_factory.mktemp("rz") / "model")


@pytest.fixture(scope="module")
def speech():
    wavs = {n: fsdd_16k(n) for n in ("0_george_0", "1_george_1", "2_george_2", "3_jackson_0", "4_jackson_1")}
    assert all(len(w) < 25600 for w in wavs.values())  # each shorter than one 1.6 s window
    long = np.concatenate(list(wavs.values()) * 3)      # ~ 6 s: several windows
    wavs["long"], wavs["long_33000"], wavs["long_40000"] = long, long[:33000], long[:40000]
    # the cases of Resemblyzer's windows: one window, zero-padded (each file alone); two windows, the
    # last zero-padded (33000); the last window dropped, samples past the windows left in (40000, long)
    assert len(partial_windows(33000)) == 2 and len(partial_windows(40000)) == 2
    assert len(partial_windows(len(long))) == 7 and (7 - 1) * 77 * 160 + 25600 < len(long)
    return wavs


def test_partial_windows_match_resemblyzer():
    pytest.importorskip("resemblyzer", reason="compares with Resemblyzer's compute_partial_slices")
    from resemblyzer import VoiceEncoder

    lengths = [1, 159, 160, 161, 400, 25599, 25600, 25601, 40000, 44800, 44960] + list(range(7, 300000, 1237))
    for rate, cov in ((1.3, 0.75), (0.7, 0.5), (4.0, 1.0)):
        for n in lengths:
            wav_slices, mel_slices = VoiceEncoder.compute_partial_slices(n, rate, cov)
            assert partial_windows(n, rate, cov) == [s.start for s in mel_slices], (n, rate, cov)
            assert [s.start for s in wav_slices] == [160 * s.start for s in mel_slices]


def test_mel_matches_librosa(speech):
    pytest.importorskip("resemblyzer", reason="compares with Resemblyzer's wav_to_mel_spectrogram")
    from resemblyzer.audio import wav_to_mel_spectrogram

    net = ResemblyzerLSTM()
    for wav in (speech["0_george_0"], speech["long"][:33333]):
        ref = wav_to_mel_spectrogram(wav)
        with torch.no_grad():
            ours = net.mel(torch.from_numpy(wav)[None])[0].numpy()
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


def test_pretrained_parity(encoder, model_dir, speech):
    import pyspeaker

    model = pyspeaker.load_model(model_dir, device="cpu")
    assert model.embedding_dim == 256
    worst = 0.0
    for name, wav in speech.items():
        ref = encoder.embed_utterance(wav)
        ours = model.embed(wav, sample_rate=16000)
        assert ours.shape == ref.shape == (256,)
        ref, ours = ref / np.linalg.norm(ref), ours / np.linalg.norm(ours)
        diff = float(np.abs(ours - ref).max())
        worst = max(worst, diff)
        assert diff < TOL, (name, len(wav), diff)
    print(f"resemblyzer pretrained parity: max abs diff {worst:.2e} over {len(speech)} utterances")
    assert worst < 1e-5  # measured ~2e-7; float32 rounding, not a formula difference


def test_random_weights_parity(tmp_path, encoder, speech):
    """Seeded random weights in Resemblyzer's file layout, loaded by VoiceEncoder itself and imported."""
    from resemblyzer import VoiceEncoder

    from pyspeaker.compat.importing import import_model

    torch.manual_seed(0)
    # torch's own initialisation of Resemblyzer's layers (larger random weights make the LSTM chaotic:
    # float32 rounding in the input then grows over the 160 steps, on either side)
    fresh = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(40, 256, 3, batch_first=True), "linear": torch.nn.Linear(256, 256)})
    state = fresh.state_dict()
    assert state.keys() == encoder.state_dict().keys()
    state.update(similarity_weight=torch.tensor([10.0]), similarity_bias=torch.tensor([-5.0]))
    path = tmp_path / "random.pt"
    torch.save({"step": 7, "model_state": state, "optimizer_state": {}}, path)
    theirs = VoiceEncoder("cpu", verbose=False, weights_fpath=path)
    imp = import_model("resemblyzer", path)  # the route `pyspeaker import-model --from resemblyzer` takes
    assert imp.source_file == path and imp.notes["source_step"] == 7
    net = build_imported(imp)
    for wav in (speech["3_jackson_0"], speech["long"]):
        ref = theirs.embed_utterance(wav)
        with torch.no_grad():
            ours = net(torch.from_numpy(wav)[None])[0].numpy()
        assert np.abs(ours - ref).max() < TOL
        assert np.abs(ours - encoder.embed_utterance(wav)).max() > 1e-2  # really other weights


def test_parity_after_preprocess_wav(encoder, model_dir, speech):
    from resemblyzer import preprocess_wav

    import pyspeaker

    model = pyspeaker.load_model(model_dir, device="cpu")
    wav = preprocess_wav(speech["long"])  # Resemblyzer's usual input: volume-normalised, silences trimmed
    assert 0 < len(wav) <= len(speech["long"])
    diff = np.abs(model.embed(wav, sample_rate=16000) - encoder.embed_utterance(wav)).max()
    assert diff < TOL


def test_batch_equals_items(speech):
    net = build_imported(import_resemblyzer(_bundled()))
    n = 33000  # two windows
    batch = np.stack([speech["long"][:n], speech["long"][n:2 * n]])
    with torch.no_grad():
        together = net(torch.from_numpy(batch))
        apart = torch.cat([net(torch.from_numpy(row)[None]) for row in batch])
    assert together.shape == (2, 256)
    assert torch.allclose(together, apart, atol=1e-6)
    assert float(torch.cosine_similarity(together[0], together[1], dim=0)) < 0.9999  # not one vector twice


def test_traced_model_finds_windows_of_any_length(speech):
    """A trace (as ``pyspeaker export`` makes) at one length gives the eager result at others:
    the windows are computed in the graph, not baked in at the example's length."""
    import warnings

    net = build_imported(import_resemblyzer(_bundled()))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, torch.from_numpy(speech["long"][:50000])[None], check_trace=False)
        for name in ("0_george_0", "long_40000", "long"):  # 1 window; last window dropped; 5 windows
            x = torch.from_numpy(speech[name])[None]
            assert torch.allclose(traced(x), net(x), atol=1e-6), name


def test_parameter_count(encoder):
    imp = import_resemblyzer()
    ours = sum(p.numel() for p in build_imported(imp).parameters())
    theirs = sum(p.numel() for p in encoder.parameters())
    assert ours == theirs == 1_423_616
    source = torch.load(imp.source_file, map_location="cpu", weights_only=True)["model_state"]
    assert count_source_parameters(source, imp.dropped) == ours
    assert set(imp.dropped) == {"similarity_weight", "similarity_bias"}
    assert imp.model_options == {"name": "ResemblyzerLSTM", "waveform": True, "nOut": 256, "hidden": 256,
                                 "layers": 3, "n_mels": 40, "rate": 1.3, "min_coverage": 0.75}


def test_same_speaker_scores_higher(model_dir):
    """The imported pretrained model tells FSDD speakers apart (utterances of five digits each)."""
    import itertools

    import pyspeaker

    model = pyspeaker.load_model(model_dir, device="cpu")
    speakers = ("george", "jackson", "lucas", "nicolas")
    emb = {(s, u): model.embed(np.concatenate([fsdd_16k(f"{d}_{s}_{u}") for d in range(5)]), sample_rate=16000)
           for s in speakers for u in (0, 1)}
    same = [model.score(emb[s, 0], emb[s, 1]) for s in speakers]
    diff = [model.score(emb[a, u], emb[b, v]) for a, b in itertools.combinations(speakers, 2)
            for u in (0, 1) for v in (0, 1)]
    print(f"resemblyzer cosine: same speaker mean {np.mean(same):.3f} (min {min(same):.3f}), "
          f"different speakers mean {np.mean(diff):.3f} (max {max(diff):.3f})")
    assert min(same) > max(diff)  # measured 0.890 > 0.643
    assert np.mean(same) - np.mean(diff) > 0.2


# ----------------------------------------------------------------------------- strictness

def _bundled() -> Path:
    from pyspeaker.compat.resemblyzer import bundled_checkpoint

    try:
        return bundled_checkpoint()
    except ConfigError:
        pytest.skip("resemblyzer (with its pretrained.pt) is not installed")


def _modified(tmp_path: Path, change) -> Path:
    ckpt = torch.load(_bundled(), map_location="cpu", weights_only=True)
    change(ckpt["model_state"])
    path = tmp_path / "modified.pt"
    torch.save(ckpt, path)
    return path


def test_wrong_shape_is_named(tmp_path):
    path = _modified(tmp_path, lambda s: s.__setitem__("lstm.weight_hh_l1", torch.zeros(1024, 128)))
    with pytest.raises(DataError) as e:
        import_resemblyzer(path)
    msg = str(e.value)
    assert "lstm.weight_hh_l1" in msg and "[1024, 128]" in msg and "[1024, 256]" in msg
    assert str(path) in msg


def test_extra_key_is_named(tmp_path):
    path = _modified(tmp_path, lambda s: s.__setitem__("linear2.weight", torch.zeros(3, 3)))
    with pytest.raises(DataError, match=r"linear2\.weight"):
        import_resemblyzer(path)


def test_missing_key_is_named(tmp_path):
    path = _modified(tmp_path, lambda s: s.pop("linear.bias"))
    with pytest.raises(DataError, match=r"linear\.bias"):
        import_resemblyzer(path)


def test_bare_state_dict_is_read(tmp_path):
    state = torch.load(_bundled(), map_location="cpu", weights_only=True)["model_state"]
    torch.save(state, tmp_path / "bare.pt")
    imp = import_resemblyzer(tmp_path / "bare.pt")
    assert torch.equal(imp.state["linear.weight"], state["linear.weight"])


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pt"):
        import_resemblyzer(tmp_path / "junk.pt")
    torch.save({"weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="model_state"):
        import_resemblyzer(tmp_path / "other.pt")


def test_no_package_no_checkpoint(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match="pip install resemblyzer"):
        import_resemblyzer()


def test_import_runs_no_resemblyzer_code():
    """Finding pretrained.pt must not import resemblyzer (nor librosa / webrtcvad); the model neither."""
    _bundled()
    code = ("import sys; from pyspeaker.compat.resemblyzer import import_resemblyzer; "
            "from pyspeaker.compat.importing import build_imported; import torch; "
            "net = build_imported(import_resemblyzer()); net(torch.zeros(1, 16000)); "
            "bad = [m for m in ('resemblyzer', 'librosa', 'webrtcvad', 'speechbrain', 'wespeaker') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_bad_options():
    from pyspeaker.models import build_model

    with pytest.raises(ConfigError, match="rate"):
        build_model("ResemblyzerLSTM", waveform=True, rate=0.1)
    with pytest.raises(ConfigError, match="waveform"):
        build_model("ResemblyzerLSTM")
    with pytest.raises(ValueError, match="batch, samples"):
        ResemblyzerLSTM()(torch.zeros(16000))
