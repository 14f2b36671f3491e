"""`pyspeaker import-model`: the command, the model directory it writes and the voxceleb_trainer route
(checked against the embeddings voxceleb_trainer itself computed on the shared fixture). The
WeSpeaker, SpeechBrain and Resemblyzer parity tests are in test_import_<toolkit>.py."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from conftest import SHARED, run_cli

FIXTURE = SHARED / "compat" / "voxceleb_trainer" / "fixture_ResNetSE34L"
VT_MODEL = FIXTURE / "ResNetSE34L_SAP_angleproto.model"
VT_FLAGS = ("--vt-model", "ResNetSE34L", "--trainfunc", "angleproto", "--log-input", "True")

pytestmark = pytest.mark.skipif(not VT_MODEL.is_file(), reason=f"{VT_MODEL} is missing (../shared not beside the repo)")


@pytest.fixture(scope="module")
def vt_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "vt_lite"
    run_cli("import-model", "--from", "voxceleb_trainer", "--checkpoint", VT_MODEL, *VT_FLAGS, "--out", out,
            check=True)
    return out


def test_model_dir_layout(vt_dir):
    import torch

    assert sorted(p.name for p in vt_dir.iterdir()) == ["final.pt", "source.json"]
    source = json.loads((vt_dir / "source.json").read_text())
    assert source["toolkit"] == "voxceleb_trainer"
    assert source["sha256"] == hashlib.sha256(VT_MODEL.read_bytes()).hexdigest()
    assert source["config"]["trainfunc"] == "angleproto" and source["config"]["log_input"] is True
    ckpt = torch.load(vt_dir / "final.pt", map_location="cpu", weights_only=False)
    assert ckpt["model_options"]["name"] == "ResNetSE34L" and ckpt["speakers"] == []
    # as many weights as the source's speaker model (__S__), its buffers (front-end, BatchNorm statistics) aside
    state = torch.load(VT_MODEL, map_location="cpu", weights_only=False)["model_state_dict"]
    buffers = ("torchfb.", "running_mean", "running_var", "num_batches_tracked")
    want = sum(v.numel() for k, v in state.items() if k.startswith("__S__.") and not any(b in k for b in buffers))
    assert source["parameters"] == want > 1_000_000


def test_imported_model_embeds_as_voxceleb_trainer(vt_dir):
    """Crop mode (400 frames, 10 crops) of the imported dir gives voxceleb_trainer's own crop embeddings."""
    import pyspeaker

    ref = np.load(FIXTURE / "reference.npz")
    model = pyspeaker.load_model(vt_dir, device="cpu", eval_frames=400)
    assert model.normalize_crops  # angleproto scores L2-normalised crops
    for name in ref["wav_names"][:3]:
        got = model.embed_crops(FIXTURE / "wavs" / str(name))
        want = ref[f"ResNetSE34L_SAP_angleproto__emb__{name}"]
        assert np.abs(got - want).max() <= 1e-4, name
    scores = [model.score(FIXTURE / "wavs" / str(e), FIXTURE / "wavs" / str(t))
              for e, t in zip(ref["trial_enroll"], ref["trial_test"])]
    assert np.allclose(scores, ref["ResNetSE34L_SAP_angleproto__scores"], atol=1e-4)


def test_whole_utterance_embedding_equals_the_vt_file_loaded_directly(vt_dir):
    import pyspeaker

    wav = FIXTURE / "wavs" / "theo_concat_idx0_idx1.wav"
    direct = pyspeaker.load_model(VT_MODEL, device="cpu", model="ResNetSE34L", trainfunc="angleproto",
                                  log_input=True, eval_frames=0)
    imported = pyspeaker.load_model(vt_dir, device="cpu")
    assert not imported.crop_mode
    a = imported.embed(wav)
    b = direct.embed(wav)  # one crop of the whole file, L2-normalised as crop mode keeps it
    assert np.abs(a / np.linalg.norm(a) - b).max() <= 1e-6


@pytest.mark.parametrize("args, message", [
    (["--from", "wespeaker", "--out", "{tmp}/m"], "--checkpoint is needed for a wespeaker model"),
    (["--from", "voxceleb_trainer", "--checkpoint", "{tmp}/nope.model", "--out", "{tmp}/m"], "checkpoint not found"),
    (["--from", "speechbrain", "--checkpoint", str(VT_MODEL), "--vt-model", "VGGVox", "--out", "{tmp}/m"],
     "options of a voxceleb_trainer model, not of speechbrain"),
    (["--from", "voxceleb_trainer", "--checkpoint", str(VT_MODEL), "--vt-model", "ResNetSE34V2", "--out", "{tmp}/m"],
     "does not match the model"),
    (["--from", "voxceleb_trainer", "--checkpoint", "{tmp}/in/lite.model", "--out", "{tmp}/in"],
     "contains the input --checkpoint"),
    (["--from", "tensorflow", "--out", "{tmp}/m"], "Invalid value for '--from'"),
    (["--from", "voxceleb_trainer", "--checkpoint", str(VT_MODEL), "--embedding-norm", str(VT_MODEL),
      "--out", "{tmp}/m"], "--embedding-norm is SpeechBrain's mean_var_norm_emb.ckpt; voxceleb_trainer has none"),
])
def test_bad_input(args, message, tmp_path):
    import shutil

    (tmp_path / "in").mkdir()
    shutil.copy(VT_MODEL, tmp_path / "in" / "lite.model")  # a copy: an output refused must never be ../shared
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = run_cli("import-model", *args)
    assert r.returncode != 0
    err = [line for line in r.stderr.splitlines() if "rror" in line]
    assert len(err) == 1 and message in err[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_failed_import_keeps_the_earlier_dir(vt_dir, tmp_path):
    import shutil

    out = tmp_path / "kept"
    shutil.copytree(vt_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run_cli("import-model", "--from", "voxceleb_trainer", "--checkpoint", VT_MODEL, "--vt-model", "VGGVox",
                "--out", out)
    assert r.returncode == 1 and "does not match the model" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_non_finite_source_weights_are_refused(tmp_path):
    """NaN or inf in a source tensor is refused where it enters, naming the key; nothing is written."""
    pytest.importorskip("resemblyzer", reason="resemblyzer (test-only, ships pretrained.pt) is not installed")
    import torch

    from pyspeaker.compat.resemblyzer import bundled_checkpoint

    ckpt = torch.load(bundled_checkpoint(), map_location="cpu", weights_only=True)
    ckpt["model_state"]["linear.bias"][3] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    r = run_cli("import-model", "--from", "resemblyzer", "--checkpoint", bad, "--out", tmp_path / "m")
    assert r.returncode == 1 and "source key linear.bias holds NaN or inf" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()


def test_non_finite_voxceleb_trainer_weights_are_refused(tmp_path):
    import torch

    ckpt = torch.load(VT_MODEL, map_location="cpu", weights_only=True)
    state = ckpt["model_state_dict"]
    key = next(k for k in state if k.endswith("fc.bias"))
    state[key][0] = float("inf")
    bad = tmp_path / "inf.model"
    torch.save(ckpt, bad)
    r = run_cli("import-model", "--from", "voxceleb_trainer", "--checkpoint", bad, *VT_FLAGS, "--out", tmp_path / "m")
    assert r.returncode == 1 and f"key {key} holds NaN or inf" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
