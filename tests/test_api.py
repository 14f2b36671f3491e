"""The model you can call: pyspeaker.load_model(...).embed / score / verify, and the embed / verify
commands, checked against what make-features + extract store for the same utterances."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FBANK, TINY_TDNN_TRAIN, run_cli, write_tone_data_dir

@dataclass
class Setup:
    root: Path
    data: Path
    wav: Path
    exp: Path
    ckpt: Path
    emb: Path
    plda: Path
    metrics: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    root = tmp_path_factory.mktemp("api")
    data = write_tone_data_dir(root / "data" / "train", root / "wav")
    # VAD and sliding CMN on, so the model's own front-end has to redo all of make-features
    store = Path(run_cli("make-features", "--data-dir", data, "--conf", FBANK, "--features-root", root / "features",
                         "--vad", "--cmn", "sliding", check=True).stdout.strip())
    exp = root / "exp"
    run_cli("train", "--features", store, "--exp-dir", exp, *TINY_TDNN_TRAIN, check=True)
    ckpt = exp / "checkpoints" / "final.pt"
    emb = root / "emb"
    run_cli("extract", "--checkpoint", ckpt, "--features", store, "--out", emb, "--threads", "1", check=True)
    plda = root / "backend_plda"
    run_cli("train-backend", "--embeddings", emb, "--out", plda, "--backend", "plda", "--lda-dim", "2", check=True)
    metrics = root / "metrics.json"
    metrics.write_text(json.dumps({"eer": 10.0, "eer_threshold": 0.25}))
    return Setup(root, data, root / "wav", exp, ckpt, emb, plda, metrics)


def _extracted(emb_dir: Path) -> dict[str, np.ndarray]:
    from pyspeaker.store.embeddings import load_embeddings

    ids, matrix = load_embeddings(emb_dir)
    return dict(zip(ids, matrix))


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, pyspeaker; assert callable(pyspeaker.load_model); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    code = ("import sys; from pyspeaker.cli import cli\n"
            "for argv in (['--help'], ['embed', '--help'], ['verify', '--help']):\n"
            "    cli.main(argv, standalone_mode=False)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_embed_equals_extract(setup):
    import pyspeaker

    model = pyspeaker.load_model(setup.ckpt, device="cpu")
    assert isinstance(model, pyspeaker.SpeakerModel)
    stored = _extracted(setup.emb)
    worst = 0.0
    for utt, ref in stored.items():
        e = model.embed(setup.wav / f"{utt}.wav")
        assert e.dtype == np.float32 and e.shape == ref.shape
        worst = max(worst, float(np.abs(e - ref).max()))
    print(f"load_model(...).embed vs extract: max abs difference {worst:.3g}")
    assert worst <= 1e-5, worst
    # the experiment dir names the same model; an array at the model's rate gives the same vector
    samples, rate = sf.read(setup.wav / "s1-u2.wav", dtype="float32")
    again = pyspeaker.load_model(setup.exp, device="cpu").embed(samples, sample_rate=rate)
    assert np.abs(again - stored["s1-u2"]).max() <= 1e-5
    batch = model.embed_batch([setup.wav / "s0-u0.wav", samples])
    assert batch.shape == (2, ref.shape[0])
    assert np.abs(batch[1] - stored["s1-u2"]).max() <= 1e-5


def test_score_and_verify(setup):
    import pyspeaker

    model = pyspeaker.load_model(setup.ckpt, device="cpu")
    a, b = setup.wav / "s0-u0.wav", setup.wav / "s2-u1.wav"
    ea, eb = model.embed(a), model.embed(b)
    cos = float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb))
    assert model.score(a, b) == pytest.approx(cos, abs=1e-6)
    assert model.score(ea, eb) == pytest.approx(cos, abs=1e-6)  # embeddings are taken as they are
    v = model.verify(a, b, threshold=cos - 0.01)
    assert v.target and v.decision == "target" and v.threshold == pytest.approx(cos - 0.01)
    assert not model.verify(a, b, threshold=cos + 0.01)
    assert model.verify(a, b, threshold_from=setup.metrics).threshold == 0.25
    assert model.verify(a, b).threshold == 0.0
    llr = model.score(a, b, backend=setup.plda)
    assert np.isfinite(llr) and abs(llr - cos) > 1e-6


def test_resampled_audio(setup, tmp_path, caplog):
    import logging

    import pyspeaker

    model = pyspeaker.load_model(setup.ckpt, device="cpu")
    x, rate = sf.read(setup.wav / "s1-u3.wav", dtype="float32")
    y = x[::2].copy()  # 8 kHz (well, decimated: the tones are far below 4 kHz)
    sf.write(tmp_path / "low.wav", y, rate // 2, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="pyspeaker"):
        e = model.embed(tmp_path / "low.wav")
    assert any("resampling" in r.getMessage() and "8000" in r.getMessage() for r in caplog.records)
    ref = model.embed(x, sample_rate=rate)
    assert e.shape == ref.shape and np.isfinite(e).all()
    assert model.score(e, ref) > 0.9


def test_embed_command_equals_extract(setup, tmp_path):
    stored = _extracted(setup.emb)
    out = tmp_path / "from_data_dir"
    run_cli("embed", "--model", setup.ckpt, "--data-dir", setup.data, "--out", out, "--device", "cpu",
            "--threads", "1", check=True)
    for name in ("xvector.h5", "xvector.scp", "xvector.ark", "spk_xvector.scp", "utt2spk"):
        assert (out / name).is_file(), name
    got = _extracted(out)
    assert sorted(got) == sorted(stored)
    assert max(float(np.abs(got[u] - stored[u]).max()) for u in stored) <= 1e-5
    out2 = tmp_path / "from_files"
    run_cli("embed", "--model", setup.exp, setup.wav / "s0-u1.wav", setup.wav / "s2-u3.wav", "--out", out2,
            "--device", "cpu", check=True)
    got = _extracted(out2)
    assert sorted(got) == ["s0-u1", "s2-u3"]
    assert np.abs(got["s2-u3"] - stored["s2-u3"]).max() <= 1e-5
    out3 = tmp_path / "from_scp"
    run_cli("embed", "--model", setup.ckpt, "--wav-scp", setup.data / "wav.scp", "--out", out3, "--device", "cpu",
            check=True)
    got = _extracted(out3)
    assert max(float(np.abs(got[u] - stored[u]).max()) for u in stored) <= 1e-5


def test_verify_command(setup):
    a, b = setup.wav / "s0-u0.wav", setup.wav / "s0-u2.wav"
    for extra in ([], ["--backend", setup.plda], ["--threshold", "-1"], ["--threshold-from", setup.metrics]):
        proc = run_cli("verify", "--model", setup.ckpt, a, b, "--device", "cpu", *extra)
        assert proc.returncode == 0, proc.stderr
        score, decision = proc.stdout.split()
        assert np.isfinite(float(score)) and decision in ("target", "nontarget")
        if extra and extra[0] == "--threshold":
            assert decision == "target"  # a cosine is never below -1
    proc = run_cli("verify", "--model", setup.ckpt, a, b, "--device", "cpu", "--threshold", "2")
    assert proc.returncode == 0 and proc.stdout.split()[1] == "nontarget"


def _not_audio(s: Path) -> Path:
    (s / "notes.wav").write_text("this is not audio\n")
    return s / "notes.wav"


def _not_a_model(s: Path) -> Path:
    (s / "model.pt").write_text("not a model\n")
    return s / "model.pt"


def _state_dict_only(s: Path) -> Path:
    import torch

    torch.save({"weight": torch.zeros(2)}, s / "weights.pt")
    return s / "weights.pt"


def _empty_dir(s: Path) -> Path:
    (s / "exp").mkdir()
    return s / "exp"


# (case id, argv builder (setup, scratch) -> list, text the one error line must contain)
BAD = [
    ("verify:missing-wav", lambda w, s: ["verify", "--model", w.ckpt, s / "nope.wav", w.wav / "s0-u0.wav"],
     "audio file not found"),
    ("verify:not-audio", lambda w, s: ["verify", "--model", w.ckpt, w.wav / "s0-u0.wav", _not_audio(s)],
     "cannot decode audio"),
    ("verify:not-a-model", lambda w, s: ["verify", "--model", _not_a_model(s), w.wav / "s0-u0.wav",
                                         w.wav / "s0-u1.wav"], "not a pyspeaker model"),
    ("verify:unknown-format", lambda w, s: ["verify", "--model", _state_dict_only(s), w.wav / "s0-u0.wav",
                                            w.wav / "s0-u1.wav"], "not a pyspeaker training checkpoint"),
    ("verify:model-dir-without-checkpoint", lambda w, s: ["verify", "--model", _empty_dir(s), w.wav / "s0-u0.wav",
                                                          w.wav / "s0-u1.wav"], "no checkpoints/final.pt"),
    ("verify:missing-model", lambda w, s: ["verify", "--model", s / "none.pt", w.wav / "s0-u0.wav",
                                           w.wav / "s0-u1.wav"], "model not found"),
    ("verify:bad-metrics", lambda w, s: ["verify", "--model", w.ckpt, w.wav / "s0-u0.wav", w.wav / "s0-u1.wav",
                                         "--threshold-from", _not_audio(s)], "not a metrics.json"),
    ("embed:missing-wav", lambda w, s: ["embed", "--model", w.ckpt, s / "nope.wav", "--out", s / "out"],
     "audio file not found"),
    ("embed:not-audio", lambda w, s: ["embed", "--model", w.ckpt, _not_audio(s), "--out", s / "out"],
     "cannot decode audio"),
    ("embed:not-a-model", lambda w, s: ["embed", "--model", _not_a_model(s), w.wav / "s0-u0.wav",
                                        "--out", s / "out"], "not a pyspeaker model"),
    ("embed:out-over-input", lambda w, s: ["embed", "--model", w.ckpt, "--data-dir", w.data, "--out", w.data],
     "--out"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input(case, setup, tmp_path):
    name, builder, expected = case
    argv = builder(setup, tmp_path)
    proc = run_cli(*argv, "--device", "cpu")
    assert proc.returncode == 1, f"{name}: exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert expected in errors[0], errors[0]
    assert not (tmp_path / "out").exists()


def test_api_errors(setup, tmp_path):
    import pyspeaker
    from pyspeaker.errors import ConfigError, DataError

    with pytest.raises(DataError, match="not a pyspeaker model"):
        pyspeaker.load_model(_not_a_model(tmp_path))
    model = pyspeaker.load_model(setup.ckpt, device="cpu")
    with pytest.raises(DataError, match="audio file not found"):
        model.embed(tmp_path / "nope.wav")
    with pytest.raises(DataError, match="1-D"):
        model.embed(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(DataError, match="too short"):
        model.embed(np.zeros(100, dtype=np.float32))
    with pytest.raises(ConfigError, match="not both"):
        model.verify(setup.wav / "s0-u0.wav", setup.wav / "s0-u1.wav", threshold=0.1, threshold_from=setup.metrics)


def test_model_trained_from_audio_equals_extract(setup, tmp_path):
    """data.feat_conf (features on the fly) with the store's settings: the saved front-end is the
    store's, so extract on the store and embed on the audio agree."""
    import pyspeaker

    exp = tmp_path / "exp_audio"
    run_cli("train", "--data-dir", setup.data, "--exp-dir", exp, *TINY_TDNN_TRAIN, "--set", f"data.feat_conf={FBANK}",
            "--set", "data.vad=true", "--set", "data.cmn=sliding", check=True)
    store = next((setup.root / "features").glob("fbank_*/train"))
    emb = tmp_path / "emb"
    run_cli("extract", "--checkpoint", exp / "checkpoints" / "final.pt", "--features", store, "--out", emb,
            "--threads", "1", check=True)
    stored = _extracted(emb)
    model = pyspeaker.load_model(exp, device="cpu")
    worst = max(float(np.abs(model.embed(setup.wav / f"{u}.wav") - ref).max()) for u, ref in stored.items())
    print(f"model trained from audio, embed vs extract: max abs difference {worst:.3g}")
    assert worst <= 1e-5, worst


def test_waveform_model(setup, tmp_path):
    import torch

    import pyspeaker
    from pyspeaker.errors import ConfigError

    exp = tmp_path / "exp_wave"
    run_cli("train", "--data-dir", setup.data, "--exp-dir", exp, *TINY_TDNN_TRAIN, "--set", "model.waveform=true",
            "--set", "model.n_mels=40", check=True)
    model = pyspeaker.load_model(exp, device="cpu")
    assert model.feature_config is None and model.sample_rate == 16000
    x, _ = sf.read(setup.wav / "s2-u0.wav", dtype="float32")
    with torch.no_grad():
        ref = model.network(torch.from_numpy(x)[None]).numpy()[0]
    assert np.abs(model.embed(setup.wav / "s2-u0.wav") - ref).max() <= 1e-6
    with pytest.raises(ConfigError, match="waveform model"):
        pyspeaker.load_model(exp, device="cpu", feature_config=FBANK)
    proc = run_cli("verify", "--model", exp, setup.wav / "s2-u0.wav", setup.wav / "s2-u1.wav", "--device", "cpu")
    assert proc.returncode == 0 and proc.stdout.split()[1] in ("target", "nontarget"), proc.stderr
    # extract takes it too, from the data dir's audio (a feature store is refused, naming the way)
    out = tmp_path / "xv_wave"
    run_cli("extract", "--checkpoint", exp, "--data-dir", setup.data, "--out", out, "--device", "cpu", check=True)
    assert np.abs(_extracted(out)["s2-u0"] - model.embed(setup.wav / "s2-u0.wav")).max() <= 1e-6
    store = next((setup.root / "features").glob("*/train"))
    bad = run_cli("extract", "--checkpoint", exp, "--features", store, "--out", tmp_path / "xv2")
    assert bad.returncode == 1 and "embed a data dir with --data-dir" in bad.stderr, bad.stderr


def test_feats_scp_model_needs_its_feature_config(setup, tmp_path):
    """A model trained from a Kaldi feats.scp without a manifest knows no feature settings."""
    import shutil

    import torch

    import pyspeaker
    from pyspeaker.errors import ConfigError
    from pyspeaker.extraction import embed_by_length
    from pyspeaker.features import load_feature_config
    from pyspeaker.store.features import FeatureStore

    store = Path(run_cli("make-features", "--data-dir", setup.data, "--conf", FBANK, "--features-root",
                         tmp_path / "features", "--vad", "--cmn", "sliding", "--format", "ark",
                         check=True).stdout.strip())
    kaldi = tmp_path / "kaldi_feats"
    kaldi.mkdir()
    for name in ("feats.scp", "utt2spk", "spk2utt"):
        shutil.copyfile(store / name, kaldi / name)
    exp = tmp_path / "exp_scp"
    run_cli("train", "--features", kaldi / "feats.scp", "--exp-dir", exp, *TINY_TDNN_TRAIN, check=True)
    with pytest.raises(ConfigError, match="feature_config"):
        pyspeaker.load_model(exp, device="cpu")
    proc = run_cli("verify", "--model", exp, setup.wav / "s0-u0.wav", setup.wav / "s0-u1.wav", "--device", "cpu")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "--feat-conf" in proc.stderr
    cfg = load_feature_config(FBANK, vad=True, cmn="sliding")
    model = pyspeaker.load_model(exp, device="cpu", feature_config=cfg)
    fs = FeatureStore(store)
    ref = embed_by_length(model.network, fs.read, list(fs.lengths))
    with torch.no_grad():
        got = model.embed_batch([setup.wav / f"{u}.wav" for u in fs.ids])
    assert np.abs(got - ref).max() <= 1e-5
    proc = run_cli("verify", "--model", exp, setup.wav / "s0-u0.wav", setup.wav / "s0-u1.wav", "--device", "cpu",
                   "--feat-conf", FBANK, "--vad", "--cmn", "sliding", "--threshold", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[0]) == pytest.approx(model.score(got[0], got[1]), abs=1e-5)
    out = tmp_path / "emb_scp_model"
    run_cli("embed", "--model", exp, "--data-dir", setup.data, "--out", out, "--device", "cpu", "--feat-conf", FBANK,
            "--vad", "--cmn", "sliding", check=True)
    emb = _extracted(out)
    assert max(float(np.abs(emb[u] - ref[i]).max()) for i, u in enumerate(fs.ids)) <= 1e-5


def test_crop_mode_equals_extract_eval_frames(setup, tmp_path):
    import h5py

    import pyspeaker

    store = next((setup.root / "features").glob("fbank_*/train"))
    out = tmp_path / "emb_crops"
    run_cli("extract", "--checkpoint", setup.ckpt, "--features", store, "--out", out, "--threads", "1",
            "--eval-frames", "30", "--num-eval", "3", check=True)
    with h5py.File(out / "xvector.h5") as f:
        ids = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]]
        vectors, crops = f["embeddings"][()], f["crops"][()]
    model = pyspeaker.load_model(setup.ckpt, device="cpu", eval_frames=30, num_eval=3)
    assert model.crop_mode
    for i, utt in enumerate(ids):
        wav = setup.wav / f"{utt}.wav"
        assert np.abs(model.embed_crops(wav) - crops[i]).max() <= 1e-5
        assert np.abs(model.embed(wav) - vectors[i]).max() <= 1e-5
    from pyspeaker.scoring.crops import crop_scores

    want = crop_scores(crops, np.array([0]), crops, np.array([5]))[0]
    assert model.score(setup.wav / f"{ids[0]}.wav", setup.wav / f"{ids[5]}.wav") == pytest.approx(want, abs=1e-5)


def test_voxceleb_trainer_model_scores_as_voxceleb_eval(setup, tmp_path):
    import torch

    import pyspeaker
    from pyspeaker.compat import voxceleb_trainer as vt
    from pyspeaker.errors import ConfigError
    from pyspeaker.models import build_model

    torch.manual_seed(0)
    net = build_model("ResNetSE34L", nOut=32, encoder_type="SAP", n_mels=40, input_norm="instance", waveform=True)
    path = tmp_path / "lite.model"
    vt.export_checkpoint(net, path)
    trials = tmp_path / "list.txt"
    trials.write_text("1 s0-u0.wav s0-u3.wav\n0 s0-u0.wav s2-u1.wav\n")
    scores = tmp_path / "scores.txt"
    run_cli("voxceleb-eval", "--model", "ResNetSE34L", "--trainfunc", "angleproto", "--nOut", "32", "--log_input",
            "True", "--eval_frames", "100", "--initial_model", path, "--test_list", trials, "--test_path", setup.wav,
            "--save-scores", scores, "--threads", "1", check=True)
    ref = [float(line.split()[0]) for line in scores.read_text().splitlines()]
    with pytest.raises(ConfigError, match="give the options"):
        pyspeaker.load_model(path, device="cpu")
    model = pyspeaker.load_model(path, device="cpu", model="ResNetSE34L", trainfunc="angleproto", nOut=32,
                                 log_input=True, eval_frames=100)
    assert model.crop_mode and model.sample_rate == 16000
    got = [model.score(setup.wav / "s0-u0.wav", setup.wav / b) for b in ("s0-u3.wav", "s2-u1.wav")]
    assert np.allclose(got, ref, atol=1e-5), (got, ref)
    assert model.embed(setup.wav / "s0-u0.wav").shape == (32,)


def test_commands_in_crop_mode(setup, tmp_path):
    """embed --eval-frames keeps the crops as extract --eval-frames does; verify takes a voxceleb_trainer
    model with its options and scores it as voxceleb-eval does."""
    import h5py
    import torch

    from pyspeaker.compat import voxceleb_trainer as vt
    from pyspeaker.models import build_model

    store = next((setup.root / "features").glob("fbank_*/train"))
    ref_dir, out = tmp_path / "extract_crops", tmp_path / "embed_crops"
    run_cli("extract", "--checkpoint", setup.ckpt, "--features", store, "--out", ref_dir, "--threads", "1",
            "--eval-frames", "30", "--num-eval", "3", check=True)
    run_cli("embed", "--model", setup.ckpt, "--data-dir", setup.data, "--out", out, "--device", "cpu",
            "--eval-frames", "30", "--num-eval", "3", check=True)
    with h5py.File(ref_dir / "xvector.h5") as a, h5py.File(out / "xvector.h5") as b:
        assert list(a["ids"][()]) == list(b["ids"][()])
        assert np.abs(a["crops"][()] - b["crops"][()]).max() <= 1e-5
        assert np.abs(a["embeddings"][()] - b["embeddings"][()]).max() <= 1e-5

    torch.manual_seed(1)
    net = build_model("ResNetSE34L", nOut=32, encoder_type="SAP", n_mels=40, input_norm="instance", waveform=True)
    path = tmp_path / "lite.model"
    vt.export_checkpoint(net, path)
    trials = tmp_path / "list.txt"
    trials.write_text("1 s1-u0.wav s1-u2.wav\n0 s1-u0.wav s2-u2.wav\n")
    scores = tmp_path / "scores.txt"
    vt_flags = ["--trainfunc", "angleproto", "--log_input", "True", "--nOut", "32"]
    run_cli("voxceleb-eval", "--model", "ResNetSE34L", *vt_flags, "--eval_frames", "100", "--initial_model", path,
            "--test_list", trials, "--test_path", setup.wav, "--save-scores", scores, "--threads", "1", check=True)
    ref = float(scores.read_text().split()[0])
    proc = run_cli("verify", "--model", path, setup.wav / "s1-u0.wav", setup.wav / "s1-u2.wav", "--device", "cpu",
                   "--vt-model", "ResNetSE34L", "--trainfunc", "angleproto", "--log-input", "True", "--nOut", "32",
                   "--eval-frames", "100", "--threshold", "-1")
    assert proc.returncode == 0, proc.stderr
    score, decision = proc.stdout.split()
    assert float(score) == pytest.approx(ref, abs=1e-5) and decision == "target"
    proc = run_cli("verify", "--model", path, setup.wav / "s1-u0.wav", setup.wav / "s1-u2.wav", "--device", "cpu")
    assert proc.returncode == 1 and "--vt-model" in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".ts")])
def test_exported_model_embeds_as_the_checkpoint(setup, tmp_path, fmt, suffix):
    """load_model opens what `export` wrote (ONNX through onnxruntime): same front-end (VAD and sliding
    CMN here, from the file's metadata), same embedding."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is test-only: pip install -r requirements-test.txt")
        pytest.importorskip("onnx", reason="onnx is test-only: pip install -r requirements-test.txt")
    import pyspeaker

    out = tmp_path / f"model{suffix}"
    run_cli("export", "--model", setup.exp, "--format", fmt, "--out", out, check=True)
    exported = pyspeaker.load_model(out, device="cpu")
    eager = pyspeaker.load_model(setup.ckpt, device="cpu")
    assert exported.feature_config.feat_id() == eager.feature_config.feat_id()
    for utt in ("s0-u0", "s2-u1"):
        a, b = exported.embed(setup.wav / f"{utt}.wav"), eager.embed(setup.wav / f"{utt}.wav")
        assert np.abs(a - b).max() <= 1e-4, utt
    assert exported.score(setup.wav / "s0-u0.wav", setup.wav / "s0-u1.wav") == pytest.approx(
        eager.score(setup.wav / "s0-u0.wav", setup.wav / "s0-u1.wav"), abs=1e-4)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model" * 10)
    from pyspeaker.errors import DataError

    with pytest.raises(DataError, match="not an ONNX model"):
        pyspeaker.load_model(junk)
