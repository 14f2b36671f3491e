"""`pyspeaker export`: TorchScript and ONNX files that give the eager model's embeddings.

Parity on real speech: FSDD recordings through pyspeaker's own 8 kHz fbank (40 bins), one long
utterance alone (batch 1, 226 frames) and three shorter crops together (batch 3, 120 frames): neither
the traced example's batch (2) nor its length (200), so dynamic batch and time are what is tested.
Every family of the zoo, tiny (conftest.TINY_MODELS, and the imported families below), seeded; max abs
difference <= 1e-4. The
differences are printed (``pytest -s``) and kept in ``MAX_DIFFS``.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import REPO, SHARED, TINY_MODELS, run_cli

FSDD = SHARED / "corpora" / "fsdd" / "recordings"
LONG = "9_theo_16.wav"                                        # 226 frames
SHORT = ("3_lucas_7.wav", "7_lucas_29.wav", "3_lucas_9.wav")  # 124-129 frames, cut to 120
TOL = 1e-4
MAX_DIFFS: dict[tuple[str, str], float] = {}

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


@pytest.fixture(scope="module")
def speech():
    """(batch 1 of [226, 40], batch 3 of [120, 40]) fbank features of FSDD speech."""
    if not all((FSDD / n).is_file() for n in (LONG, *SHORT)):
        pytest.skip(f"FSDD recordings not found in {FSDD} (../shared beside the repository)")
    from pyspeaker.audio import read_audio_file
    from pyspeaker.features import FeatureExtractor, load_feature_config

    extract = FeatureExtractor(load_feature_config(REPO / "conf" / "fbank_8k.conf"))
    feats = [extract(*read_audio_file(FSDD / n)) for n in (LONG, *SHORT)]
    one = torch.from_numpy(np.ascontiguousarray(feats[0]))[None]
    three = torch.from_numpy(np.stack([f[:120] for f in feats[1:]]))
    assert one.shape == (1, 226, 40) and three.shape == (3, 120, 40)
    return one, three


def _tiny(name: str):
    from pyspeaker.models import build_model

    options = {**TINY_MODELS[name][0], "n_mels": 40}  # the 8 kHz fbank has 40 bins
    torch.manual_seed(0)
    return build_model(name, **options).eval(), {"name": name, **options}


def _record(name: str, fmt: str, diff: float) -> None:
    MAX_DIFFS[(name, fmt)] = diff
    print(f"\nexport parity {name:20s} {fmt:11s} max abs diff {diff:.3g}")


def _max_diff(model, run, inputs) -> float:
    """Max abs difference between ``run(x)`` (an exported model, numpy out) and the eager model."""
    diff = 0.0
    with torch.no_grad():
        for x in inputs:
            want = model(x).numpy()
            got = run(x)
            assert got.shape == want.shape
            diff = max(diff, float(np.abs(got - want).max()))
    return diff


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (eager model, torchscript path, onnx path or None), exported once per family."""
    from pyspeaker.export import export_model

    have_onnx = True
    try:
        import onnx  # noqa: F401
    except ImportError:
        have_onnx = False
    out = {}
    folder = tmp_path_factory.mktemp("export")

    def get(name):
        if name not in out:
            model, _ = _tiny(name)
            ts = export_model(model, "torchscript", folder / f"{name}.pt")
            onx = export_model(model, "onnx", folder / f"{name}.onnx") if have_onnx else None
            out[name] = (model, ts, onx)
        return out[name]
    return get


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_torchscript_parity(name, speech, exported):
    model, ts_path, _ = exported(name)
    loaded = torch.jit.load(str(ts_path))
    diff = 0.0
    with torch.no_grad():
        for x in speech:
            want, got = model(x), loaded(x)
            assert got.shape == want.shape == (x.shape[0], want.shape[1])
            diff = max(diff, float((got - want).abs().max()))
    _record(name, "torchscript", diff)
    assert diff <= TOL


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_onnx_parity(name, speech, exported):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is test-only: pip install -r requirements-test.txt")
    pytest.importorskip("onnx", reason="onnx (torch's ONNX exporter) is test-only: "
                                       "pip install -r requirements-test.txt")
    model, _, onnx_path = exported(name)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["feats"]
    diff = _max_diff(model, lambda x: session.run(None, {"feats": x.numpy()})[0], speech)
    _record(name, "onnx", diff)
    assert diff <= TOL


@pytest.fixture(scope="module")
def speech_16k():
    """The same recordings as waveforms at 16 kHz (the front-end's rate): batch 1 of 36160 samples,
    batch 3 of 19200 (resampled from FSDD's 8 kHz)."""
    if not all((FSDD / n).is_file() for n in (LONG, *SHORT)):
        pytest.skip(f"FSDD recordings not found in {FSDD} (../shared beside the repository)")
    import torchaudio.functional as AF

    from pyspeaker.audio import read_audio_file

    wavs = []
    for n in (LONG, *SHORT):
        samples, rate = read_audio_file(FSDD / n)
        wavs.append(AF.resample(torch.from_numpy(samples), rate, 16000))
    return wavs[0][None, :36160].contiguous(), torch.stack([w[:19200] for w in wavs[1:]])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_with_frontend_parity(name, fmt, speech_16k, tmp_path):
    """--with-frontend: the whole waveform model (front-end + network), any batch and length;
    TorchScript traces torch.stft itself, ONNX computes the STFT as a convolution."""
    from pyspeaker.export import export_model
    from pyspeaker.models import build_model

    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is test-only: "
                                                        "pip install -r requirements-test.txt")
        pytest.importorskip("onnx", reason="onnx is test-only: pip install -r requirements-test.txt")
    torch.manual_seed(0)
    model = build_model(name, waveform=True, **TINY_MODELS[name][0]).eval()
    path = export_model(model, fmt, tmp_path / f"w.{fmt}", with_frontend=True)
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))
        run = lambda wav: loaded(wav).numpy()
    else:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["waveform"]
        run = lambda wav: session.run(None, {"waveform": wav.numpy()})[0]
    diff = _max_diff(model, run, speech_16k)
    _record(f"{name}+frontend", fmt, diff)
    assert diff <= TOL


def test_export_model_choices(tmp_path, monkeypatch):
    """Without --with-frontend a waveform model exports its network (features in); bad requests refused."""
    from pyspeaker.errors import ConfigError
    from pyspeaker.export import export_model
    from pyspeaker.models import build_model

    torch.manual_seed(0)
    model = build_model("TDNN", waveform=True, **TINY_MODELS["TDNN"][0]).eval()
    feats_only = torch.jit.load(str(export_model(model, "torchscript", tmp_path / "f.pt")))
    x = torch.randn(2, 90, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((feats_only(x) - model.model(x)).abs().max()) <= TOL
    with pytest.raises(ConfigError, match="waveform models only"):
        export_model(model.model, "torchscript", tmp_path / "x.pt", with_frontend=True)
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(model.model, "tflite", tmp_path / "x.tflite")
    with monkeypatch.context() as m:  # without the onnx package: a clear refusal, nothing written
        m.setitem(sys.modules, "onnx", None)
        with pytest.raises(ConfigError, match="needs the 'onnx' package"):
            export_model(model.model, "onnx", tmp_path / "x.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pt"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A pyspeaker checkpoint of a tiny TDNN, as the trainer writes it (model, model_options, epoch)."""
    from pyspeaker.training.checkpoint import model_from_checkpoint, save_checkpoint

    model, options = _tiny("TDNN")
    path = tmp_path_factory.mktemp("ckpt") / "final.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_options": options, "epoch": 0})
    model_from_checkpoint(path)  # accepted as a pyspeaker checkpoint
    return path, model


def test_cli_export_onnx_and_torchscript(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is test-only: pip install -r requirements-test.txt")
    pytest.importorskip("onnx", reason="onnx is test-only: pip install -r requirements-test.txt")
    ckpt, model = checkpoint
    x = torch.randn(2, 80, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x).numpy()
    proc = run_cli("export", "--model", ckpt, "--format", "onnx", "--out", tmp_path / "m.onnx", check=True)
    assert proc.stdout.strip() == str(tmp_path / "m.onnx")
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"feats": x.numpy()})[0]
    assert np.abs(got - want).max() <= TOL
    run_cli("export", "--model", ckpt, "--format", "torchscript", "--out", tmp_path / "m.pt", check=True)
    with torch.no_grad():
        assert np.abs(torch.jit.load(str(tmp_path / "m.pt"))(x).numpy() - want).max() <= TOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]  # no temporary files left


def _one_error_line(proc, code: int, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_cli_bad_input(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    _one_error_line(run_cli("export", "--model", ckpt, "--format", "bogus", "--out", tmp_path / "m"), 2,
                    "bogus", "torchscript", "onnx")
    not_model = tmp_path / "notes.txt"
    not_model.write_text("these are not weights\n")
    _one_error_line(run_cli("export", "--model", not_model, "--format", "torchscript", "--out", tmp_path / "m.pt"), 1,
                    str(not_model))
    _one_error_line(run_cli("export", "--model", ckpt, "--format", "torchscript", "--out", ckpt), 1,
                    "--out", "refusing")
    _one_error_line(run_cli("export", "--model", ckpt, "--format", "torchscript", "--with-frontend",
                            "--out", tmp_path / "m.pt"), 1, "--with-frontend")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    assert ckpt.stat().st_size > 0


# The imported families (import-model), small and seeded: WeSpeaker's take fbank features (40 bins here),
# SpeechBrain's and Resemblyzer's compute their own features (waveform in, TorchScript only: the ONNX
# exporter has no torch.stft, and export says so).
IMPORTED_FEATURE_MODELS = {
    "ResNet34": {"feat_dim": 40, "embed_dim": 32, "m_channels": 8},
    "ECAPA_TDNN_GLOB_c512": {"feat_dim": 40, "embed_dim": 32},
    "CAMPPlus": {"feat_dim": 40, "embed_dim": 32},
}
IMPORTED_WAVEFORM_MODELS = {
    "SpeechBrainECAPA": {"channels": [32, 32, 32, 32, 96], "attention_channels": 16, "se_channels": 16,
                         "res2net_scale": 4, "nOut": 24},
    "ResemblyzerLSTM": {"hidden": 32, "nOut": 32},
}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", list(IMPORTED_FEATURE_MODELS))
def test_imported_feature_model_parity(name, fmt, speech, tmp_path):
    from pyspeaker.export import export_model
    from pyspeaker.models import build_model

    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime", reason="onnxruntime is test-only: "
                                                        "pip install -r requirements-test.txt")
        pytest.importorskip("onnx", reason="onnx is test-only: pip install -r requirements-test.txt")
    torch.manual_seed(0)
    model = build_model(name, **IMPORTED_FEATURE_MODELS[name]).eval()
    path = export_model(model, fmt, tmp_path / f"m.{fmt}")
    if fmt == "torchscript":
        loaded = torch.jit.load(str(path))
        run = lambda x: loaded(x).numpy()
    else:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {"feats": x.numpy()})[0]
    diff = _max_diff(model, run, speech)
    _record(name, fmt, diff)
    assert diff <= TOL


@pytest.mark.parametrize("name", list(IMPORTED_WAVEFORM_MODELS))
def test_imported_waveform_model_parity(name, speech_16k, tmp_path):
    from pyspeaker.errors import ConfigError
    from pyspeaker.export import export_model
    from pyspeaker.models import build_model

    torch.manual_seed(0)
    model = build_model(name, waveform=True, **IMPORTED_WAVEFORM_MODELS[name]).eval()
    loaded = torch.jit.load(str(export_model(model, "torchscript", tmp_path / "w.pt", with_frontend=True)))
    diff = _max_diff(model, lambda wav: loaded(wav).numpy(), speech_16k)
    _record(f"{name}+frontend", "torchscript", diff)
    assert diff <= TOL
    with pytest.raises(ConfigError, match="export it with --with-frontend"):
        export_model(model, "torchscript", tmp_path / "f.pt")
    with pytest.raises(ConfigError, match="use --format torchscript"):
        export_model(model, "onnx", tmp_path / "w.onnx", with_frontend=True)
