"""Training features: exact resume after SIGKILL, keep-last + averaging, validation + best checkpoint +
plot, training from audio (on-the-fly features, waveform front-end, augmentation), Kaldi feats.scp,
schedules, voxceleb_trainer flag aliases."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from click.testing import CliRunner

from pyspeaker.cli import cli
from pyspeaker.errors import ConfigError
from pyspeaker.training.checkpoint import load_checkpoint, model_from_checkpoint
from pyspeaker.training.config import load_config
from pyspeaker.training.trainer import train

from conftest import REPO, run_cli

TINY = ["train.max_epoch=2", "data.batch_size=4", "data.crop_frames=30", "model.nOut=16", "optim.lr=0.005",
        "train.device=cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- generated audio

def _voice(rng, f0: float, env, n: int, sr: int = 16000) -> np.ndarray:
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)))) / sr
    x = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(env))
    return (0.3 * x / np.abs(x).max() + 0.01 * rng.normal(size=n)).astype(np.float32)


def make_audio_dir(root: Path, speakers: int = 4, utts: int = 4, seed: int = 0, prefix: str = "spk",
                   trials: bool = False) -> Path:
    """A Kaldi data dir of WAVs: each speaker a harmonic voice with its own pitch and spectrum."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    wav, u2s = {}, {}
    for s in range(speakers):
        f0, env = 90 + 35 * s, rng.uniform(0.2, 1.0, 8)
        for u in range(utts):
            utt = f"{prefix}{s:02d}-u{u:02d}"
            path = root / "wav" / f"{utt}.wav"
            sf.write(path, _voice(rng, f0, env, int(16000 * rng.uniform(0.8, 1.3))), 16000)
            wav[utt], u2s[utt] = str(path), f"{prefix}{s:02d}"
    (root / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(wav.items())))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in sorted(u2s.items())))
    spk2utt: dict[str, list[str]] = {}
    for u, s in sorted(u2s.items()):
        spk2utt.setdefault(s, []).append(u)
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items())))
    if trials:
        ids = sorted(u2s)
        (root / "trials").write_text("".join(f"{a} {b} {'target' if u2s[a] == u2s[b] else 'nontarget'}\n"
                                             for i, a in enumerate(ids) for b in ids[i + 1:]))
    return root


def make_musan(root: Path, seed: int = 1) -> Path:
    """MUSAN layout: noise/, music/, speech/ folders of WAVs (MUSAN-style file names)."""
    rng = np.random.default_rng(seed)
    for kind, count in (("noise", 2), ("music", 2), ("speech", 4)):
        d = root / kind / "src"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            if kind == "noise":
                x = rng.normal(0, 0.1, 16000)
            elif kind == "music":
                x = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 800) * np.arange(32000) / 16000)
            else:
                x = _voice(rng, rng.uniform(100, 250), rng.uniform(0.2, 1, 6), 16000)
            sf.write(d / f"{kind}-src-{i:04d}.wav", x.astype(np.float32), 16000)
    return root


def make_rirs(root: Path, count: int = 3, seed: int = 2) -> Path:
    """Impulse responses: silence, a direct-path peak at sample 40, then an exponential tail."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        t = np.arange(3200) / 16000
        rir = 0.1 * rng.normal(size=t.size) * np.exp(-t / 0.05)
        rir[:40], rir[40] = 0.0, 3.0
        sf.write(root / f"rir{i}.wav", (0.9 * rir / np.abs(rir).max()).astype(np.float32), 16000)  # 16-bit PCM
    return root


def _metrics(exp: Path) -> list[list[str]]:
    return [line.split("\t") for line in (exp / "metrics.tsv").read_text().splitlines()]


# ----------------------------------------------------------------------------- resume

def test_resume_after_sigkill_gives_the_uninterrupted_weights(tmp_path, speaker_store):
    settings = ["train.max_epoch=2", "data.batch_size=2", "data.crop_frames=50", "model.nOut=16",
                "optim.lr=0.005", "train.device=cpu", "loss.name=angleproto", "optim.scheduler=cosine",
                "optim.warmup_epochs=1"]
    ref = train(load_config(None, settings), speaker_store, tmp_path / "ref", progress=False)

    exp = tmp_path / "killed"
    args = [sys.executable, "-m", "pyspeaker", "train", "--features", str(speaker_store), "--exp-dir", str(exp),
            "--threads", "1", "--no-progress"] + [a for kv in settings for a in ("--set", kv)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = exp / "checkpoints" / "epoch_0001.pt"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # epoch 1 is saved: the kill lands in epoch 2
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert first.is_file() and not (exp / "checkpoints" / "epoch_0002.pt").exists()  # killed mid-epoch 2
    assert not (exp / "checkpoints" / "final.pt").exists()

    run_cli("train", "--features", speaker_store, "--exp-dir", exp, "--threads", "1", "--resume", "yes",
            *[a for kv in settings for a in ("--set", kv)], check=True)
    got, want = load_checkpoint(exp / "checkpoints" / "final.pt"), load_checkpoint(ref)
    assert got["epoch"] == want["epoch"] == 2
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key]), key
    for key in want["loss"]:
        assert torch.equal(got["loss"][key], want["loss"][key]), key
    assert [r[:4] for r in _metrics(exp)] == [r[:4] for r in _metrics(tmp_path / "ref")]  # loss, acc, lr per epoch
    log = (exp / "train.log").read_text()
    assert "resuming" in log and "epoch_0001.pt (epoch 1 of 2)" in log


def test_resume_modes(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(load_config(None, TINY), speaker_store, exp, progress=False, resume="yes")
    train(load_config(None, TINY), speaker_store, exp, progress=False)
    longer = load_config(None, TINY + ["train.max_epoch=3"])
    train(longer, speaker_store, exp, progress=False, resume="yes")  # a longer run continues from epoch 2
    assert [r[0] for r in _metrics(exp)] == ["epoch", "1", "2", "3"]
    with pytest.raises(ConfigError, match=r"cannot resume .*: optim.lr is 0.1 here but 0.005 in the checkpoint"):
        train(load_config(None, TINY + ["optim.lr=0.1", "train.max_epoch=4"]), speaker_store, exp, progress=False,
              resume="yes")
    # auto: different settings -> start over (with a warning), no error
    train(load_config(None, TINY + ["optim.lr=0.1"]), speaker_store, exp, progress=False, resume="auto")
    assert [r[0] for r in _metrics(exp)] == ["epoch", "1", "2"]
    assert "not resuming from" in (exp / "train.log").read_text()


# ----------------------------------------------------------------------------- keep-last, average

def test_keep_last_and_average(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    train(load_config(None, TINY + ["train.max_epoch=4", "train.keep_last=2"]), speaker_store, exp, progress=False)
    ck = exp / "checkpoints"
    assert sorted(p.name for p in ck.glob("*.pt")) == ["epoch_0003.pt", "epoch_0004.pt", "final.pt", "init.pt"]
    result = CliRunner().invoke(cli, ["average", "--exp-dir", str(exp), "--last", "2"])
    assert result.exit_code == 0, result.output
    out = ck / "avg_last2.pt"
    assert result.output.strip().endswith(str(out))
    avg, a, b = load_checkpoint(out), load_checkpoint(ck / "epoch_0003.pt"), load_checkpoint(ck / "epoch_0004.pt")
    assert avg["epoch"] == 4 and avg["averaged_from"] == [str(ck / "epoch_0003.pt"), str(ck / "epoch_0004.pt")]
    assert "optimizer" not in avg and avg["speakers"] == b["speakers"]
    for key, value in avg["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a["model"][key] + b["model"][key]) / 2)
        else:
            assert torch.equal(value, b["model"][key])
    model, _ = model_from_checkpoint(out)  # usable like final.pt
    assert model(torch.randn(2, 40, 20)).shape == (2, 16)
    result = CliRunner().invoke(cli, ["average", "--exp-dir", str(exp), "--last", "3"])
    assert "--last 3 but there are 2 epoch checkpoints" in str(result.exception)


# ----------------------------------------------------------------------------- validation

def _store_trials(store: Path) -> Path:
    utts = [line.split() for line in (store / "utt2spk").read_text().splitlines()]
    lines = [f"{a} {b} {'target' if sa == sb else 'nontarget'}\n"
             for i, (a, sa) in enumerate(utts) for b, sb in utts[i + 1:] if int(a[-2:]) % 3 == 0]
    path = store / "trials"
    path.write_text("".join(lines))
    return path


def test_validation_metrics_best_checkpoint_and_plot(tmp_path, speaker_store):
    trials = _store_trials(speaker_store)
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["train.max_epoch=3", "train.test_interval=2", f"valid.trials={trials}",
                                    f"valid.features={speaker_store}"])
    train(cfg, speaker_store, exp, progress=False)
    rows = _metrics(exp)
    assert rows[0] == ["epoch", "loss", "accuracy", "lr", "seconds", "valid_eer", "valid_min_dcf", "crops_per_s",
                       "data_wait_pct"]
    assert rows[1][5:7] == ["nan", "nan"]                    # not validated at epoch 1
    eers = [float(rows[2][5]), float(rows[3][5])]              # epoch 2 and the last epoch
    assert all(0 <= e <= 100 for e in eers) and 0 <= float(rows[3][6])
    best = load_checkpoint(exp / "checkpoints" / "best.pt")
    assert best["valid"]["eer"] == pytest.approx(min(eers), abs=1e-3)
    assert best["epoch"] in [2 + k for k, e in enumerate(eers) if e == min(eers)]
    log = (exp / "train.log").read_text()
    assert "validation every 2 epochs on" in log and "validation EER" in log
    result = CliRunner().invoke(cli, ["plot-training", str(exp)])
    assert result.exit_code == 0, result.output
    png = exp / "training.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_validation_needs_its_data(tmp_path, speaker_store):
    trials = _store_trials(speaker_store)
    cfg = load_config(None, TINY + ["train.test_interval=1", f"valid.trials={trials}"])
    with pytest.raises(ConfigError, match="valid.features"):
        train(cfg, speaker_store, tmp_path / "exp", progress=False)


# ----------------------------------------------------------------------------- audio input and augmentation

def test_training_from_audio_with_features_on_the_fly_and_augmentation(tmp_path):
    from pyspeaker.features import load_feature_config

    audio = make_audio_dir(tmp_path / "train")
    musan, rirs = make_musan(tmp_path / "musan"), make_rirs(tmp_path / "rirs")
    exp = tmp_path / "exp"
    fbank = REPO / "conf" / "fbank.conf"
    cfg = load_config(None, TINY + ["train.max_epoch=1", f"data.feat_conf={fbank}", f"augment.noise_dir={musan}",
                                    f"augment.rir_dir={rirs}", "augment.speed_perturb=true", "augment.specaugment=true",
                                    "augment.prob=1.0"])
    final = train(cfg, None, exp, progress=False, data_dir=audio)
    ckpt = load_checkpoint(final)
    assert ckpt["speakers"][:3] == ["sp0.9-spk00", "sp0.9-spk01", "sp0.9-spk02"] and len(ckpt["speakers"]) == 12
    assert ckpt["feat_id"] == load_feature_config(fbank).feat_id()
    assert ckpt["model_options"]["n_mels"] == 80
    log = (exp / "train.log").read_text()
    assert "12 speakers, 48 utterances, feature dim 80" in log
    assert "reverb + noise + music + babble (p=1; 2 noise, 2 music, 4 speech, 3 RIRs)" in log
    # the stored-feature path refuses waveform augmentation with the setting to change
    with pytest.raises(ConfigError, match=r"augment.noise_dir changes the waveform: train from a data dir"):
        train(load_config(None, TINY + [f"augment.noise_dir={musan}"]), tmp_path / "store", exp, progress=False)
    with pytest.raises(ConfigError, match="needs a feature config"):
        train(load_config(None, TINY), None, exp, progress=False, data_dir=audio)


def test_speed_factors_make_one_pseudo_speaker_per_factor(tmp_path):
    from pyspeaker.data.kaldi_dir import DataDir
    from pyspeaker.training.data import AudioCropDataset

    audio = make_audio_dir(tmp_path / "train")  # 4 speakers x 4 utterances
    ds = AudioCropDataset(DataDir.load(audio), crop=50, seed=0, feature_cfg=None, speed_factors=(0.8, 1.0, 1.25))
    assert len(ds) == 48 and len(ds.speakers) == 12
    assert ds.speakers[:2] == ["sp0.8-spk00", "sp0.8-spk01"] and "sp1.25-spk03" in ds.speakers
    assert ds.labels[ds.items.index(("spk00-u00", 1.0))] == ds.speakers.index("spk00")
    # a 0.8x copy plays 1.25 times longer, so its crop needs fewer source samples: same crop length
    assert ds[0][0].shape == ds[20][0].shape == (50 * 160 + 240,)
    for bad in ("[]", "[1.0, 1.0]", "[0.1, 1.0]", "1.1"):
        with pytest.raises(ConfigError, match="augment.speed_factors must be a list of distinct factors in"):
            load_config(None, [f"augment.speed_factors={bad}"])


def test_waveform_model_trains_and_validates_from_audio(tmp_path):
    from pyspeaker.models.frontend import WaveformModel
    from pyspeaker.training.data import AudioCropDataset
    from pyspeaker.data.kaldi_dir import DataDir

    audio = make_audio_dir(tmp_path / "train")
    valid = make_audio_dir(tmp_path / "valid", speakers=3, utts=3, seed=5, prefix="v", trials=True)
    ds = AudioCropDataset(DataDir.load(audio), crop=50, seed=0)
    assert ds[3][0].shape == (50 * 160 + 240,)  # voxceleb_trainer's crop length in samples
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["model.waveform=true", "model.log_input=true", "model.n_mels=40",
                                    "loss.name=softmaxproto", "data.batch_size=2", "train.test_interval=1",
                                    f"valid.trials={valid / 'trials'}", f"valid.data_dir={valid}"])
    final = train(cfg, None, exp, progress=False, data_dir=audio)
    model, ckpt = model_from_checkpoint(final)
    assert isinstance(model, WaveformModel) and ckpt["feat_id"] == "waveform"
    assert model(torch.randn(1, 16000)).shape == (1, 16)
    assert all(math.isfinite(float(r[5])) for r in _metrics(exp)[1:])


def test_augmentation_units(tmp_path):
    from pyspeaker.training.augment import WaveAugment, read_noise_dir, read_rir_dir, spec_augment, speed_perturb

    musan, rirs = make_musan(tmp_path / "musan"), make_rirs(tmp_path / "rirs")
    found = read_noise_dir(musan)
    assert {k: len(v) for k, v in found.items()} == {"noise": 2, "music": 2, "speech": 4}
    # the same recordings as a Kaldi data dir (category from MUSAN's utterance ids)
    dd = tmp_path / "musan_dir"
    dd.mkdir()
    (dd / "wav.scp").write_text("".join(f"{Path(p).stem} {p}\n" for ps in found.values() for p in ps))
    assert {k: len(v) for k, v in read_noise_dir(dd).items()} == {"noise": 2, "music": 2, "speech": 4}
    assert len(read_rir_dir(rirs)) == 3

    rng = np.random.default_rng(0)
    clean = _voice(rng, 120, [1, 0.5, 0.3], 16000)
    base = {"prob": 1.0, "noise_snr": [10, 10], "music_snr": [5, 15], "babble_snr": [13, 20], "babble_speakers": [3, 7],
            "noise_dir": str(musan), "rir_dir": None}
    aug = WaveAugment(base, 16000)
    noisy = aug.add_noise(clean, "noise", np.random.default_rng(1))
    added = noisy - clean
    snr = 10 * np.log10((np.mean(clean.astype(np.float64) ** 2) + 1e-4) / (np.mean(added.astype(np.float64) ** 2) + 1e-4))
    assert snr == pytest.approx(10.0, abs=0.2) and noisy.shape == clean.shape
    assert aug.kinds == ["noise", "music", "babble"]
    rev = WaveAugment({**base, "noise_dir": None, "rir_dir": str(rirs)}, 16000)
    out = rev.reverberate(clean, np.random.default_rng(2))
    assert out.shape == clean.shape and out.dtype == np.float32
    # aligned on the direct path: the reverberant signal stays correlated with the clean one at lag 0
    assert np.corrcoef(out, clean)[0, 1] > 0.5
    delta = tmp_path / "delta"
    delta.mkdir()
    impulse = np.zeros(800, dtype=np.float32)
    impulse[100] = 0.5
    sf.write(delta / "d.wav", impulse, 16000)
    same = WaveAugment({**base, "noise_dir": None, "rir_dir": str(delta)}, 16000).reverberate(clean, rng)
    np.testing.assert_allclose(same, clean, atol=1e-5)  # a pure delay: no delay, no change of level
    assert WaveAugment({**base, "prob": 0.0}, 16000)(clean, rng) is clean

    assert len(speed_perturb(clean, 0.9, 16000)) == pytest.approx(16000 / 0.9, abs=2)
    assert len(speed_perturb(clean, 1.1, 16000)) == pytest.approx(16000 / 1.1, abs=2)

    torch.manual_seed(0)
    feats = torch.randn(4, 50, 20) + 5
    masked = spec_augment(feats, freq_masks=2, freq_width=5, time_masks=1, time_width=8)
    changed = masked != feats
    assert changed.any() and masked.shape == feats.shape
    for i in range(4):  # masked cells hold the example's mean
        assert torch.allclose(masked[i][changed[i]], feats[i].mean().expand(int(changed[i].sum())))
        bins = changed[i].all(dim=0).sum()
        assert bins <= 10


def test_bad_noise_dirs_are_data_errors(tmp_path):
    from pyspeaker.errors import DataError
    from pyspeaker.training.augment import read_noise_dir

    with pytest.raises(DataError, match="not found"):
        read_noise_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no noise, music or speech recordings"):
        read_noise_dir(tmp_path / "empty")


# ----------------------------------------------------------------------------- Kaldi features, schedules, CLI

def test_training_from_a_kaldi_feats_scp(tmp_path, speaker_store):
    import kaldiio

    from pyspeaker.store import FeatureStore

    kdir = tmp_path / "kaldi"
    kdir.mkdir()
    store = FeatureStore(speaker_store)
    with kaldiio.WriteHelper(f"ark,scp:{kdir / 'feats.ark'},{kdir / 'feats.scp'}") as w:
        for utt, feats in store.items():
            w(utt, feats)
    (kdir / "utt2spk").write_text((speaker_store / "utt2spk").read_text())
    exp = tmp_path / "exp"
    train(load_config(None, TINY + ["train.max_epoch=1"]), kdir, exp, progress=False)
    assert "4 speakers, 24 utterances, feature dim 20" in (exp / "train.log").read_text()
    assert load_checkpoint(exp / "checkpoints" / "final.pt")["feat_id"].startswith("kaldi_")


def test_schedules():
    from pyspeaker.training.schedule import Schedule

    def sched(**kw):
        o = load_config(None, [f"optim.{k}={v}" for k, v in kw.items()])["optim"]
        return Schedule(o, max_epoch=10)

    s = sched(lr=0.1, lr_decay=0.5, step_epochs=2)
    assert [round(s.lr(p), 6) for p in (0, 1.5, 2, 3.9, 4)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    e = sched(lr=0.1, scheduler="exponential", lr_decay=0.5)
    assert e.lr(1.5) == pytest.approx(0.1 * 0.5 ** 1.5)
    c = sched(lr=0.1, scheduler="cosine", min_lr=0.01)
    assert c.lr(0) == pytest.approx(0.1) and c.lr(5) == pytest.approx(0.055) and c.lr(10) == pytest.approx(0.01)
    w = sched(lr=0.1, scheduler="cosine", warmup_epochs=2)
    assert w.lr(0, steps_per_epoch=4) == pytest.approx(0.1 * 0.25 / 2 * c.factor(0) / 1.0, rel=1e-6)
    assert w.lr(1.0, 4) < w.lr(1.5, 4) and w.lr(2.5, 4) == pytest.approx(0.1 * sched(scheduler="cosine").factor(2.5))
    m = sched(margin_warmup_epochs=4)
    assert [m.margin(0.2, p) for p in (0, 1, 4, 9)] == [0.0, 0.05, 0.2, 0.2]

    from pyspeaker.losses import build_loss

    loss = build_loss("aamsoftmax", 4, 3, margin=0.2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert m.apply(opt, 2.0, 10, loss) == pytest.approx(0.001 * 0.95 ** 2)
    assert loss.m == pytest.approx(0.1) and loss.margin == 0.2 and opt.param_groups[0]["lr"] == pytest.approx(0.001 * 0.95 ** 2)


def test_voxceleb_trainer_flag_aliases(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    result = CliRunner().invoke(cli, [
        "train", "--features", str(speaker_store), "--save_path", str(exp), "--model", "ResNetSE34L",
        "--encoder_type", "ASP", "--trainfunc", "angleproto", "--nPerSpeaker", "2", "--batch_size", "2",
        "--max_frames", "30", "--max_epoch", "1", "--nOut", "16", "--test_interval", "5", "--nClasses", "4",
        "--threads", "1", "--no-progress", "--set", "train.device=cpu", "--mixedprec"])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["model"]["encoder_type"] == "ASP" and cfg["loss"]["name"] == "angleproto"
    assert (cfg["data"]["nPerSpeaker"], cfg["data"]["batch_size"], cfg["data"]["crop_frames"]) == (2, 2, 30)
    assert (cfg["train"]["max_epoch"], cfg["train"]["test_interval"], cfg["optim"]["step_epochs"]) == (1, 5, 5)
    log = (exp / "train.log").read_text()
    assert "mixedprec applies to CUDA only" in log and "no validation trial list" in log
    bad = CliRunner().invoke(cli, ["train", "--features", str(speaker_store), "--save_path", str(tmp_path / "x"),
                                   "--nClasses", "5994", "--set", "train.max_epoch=1"])
    assert isinstance(bad.exception, ConfigError)
    assert "--nClasses 5994 does not match the training data" in str(bad.exception) and "4 speakers" in str(bad.exception)
    bad = CliRunner().invoke(cli, ["train", "--features", str(speaker_store), "--save_path", str(tmp_path / "x"),
                                   "--n_mels", "64"])
    assert "model.n_mels is 64 but the features" in str(bad.exception)


def test_fsdd_four_training_speakers_train_with_a_classification_loss(tmp_path):
    """Real recordings (FSDD, 8 kHz): 4 training speakers, a batch size meant for VoxCeleb."""
    from conftest import SHARED

    fsdd = SHARED / "corpora" / "fsdd" / "recordings"
    if not fsdd.is_dir():
        pytest.skip("FSDD recordings not available")
    data = tmp_path / "fsdd_train"
    data.mkdir()
    utts = {f"{spk}-{d}_{i}": fsdd / f"{d}_{spk}_{i}.wav" for spk in ("george", "jackson", "lucas", "nicolas")
            for d in range(3) for i in range(5, 7)}
    (data / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in sorted(utts.items())))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    conf = tmp_path / "fbank8k.conf"
    conf.write_text("--sample-frequency=8000\n--num-mel-bins=24\n--dither=0\n")
    exp = tmp_path / "exp"
    cfg = load_config(REPO / "conf" / "resnet34l_amsoftmax.yaml",
                      ["train.max_epoch=2", "data.crop_frames=30", "model.nOut=16", f"data.feat_conf={conf}",
                       "train.device=cpu", "augment.specaugment=true"])
    assert cfg["data"]["batch_size"] == 200
    train(cfg, None, exp, progress=False, data_dir=data)
    log = (exp / "train.log").read_text()
    assert "data.batch_size 200 -> 4" in log and "4 speakers x 1 utterances of 30 frames per step; 6 steps" in log
    assert len(_metrics(exp)) == 3
