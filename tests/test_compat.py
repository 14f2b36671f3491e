"""voxceleb_trainer compatibility: the ResNetSE34L fixture, strict loading of every format, export, metrics."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import soundfile
import torch

from pyspeaker.audio import read_audio_file
from pyspeaker.compat import voxceleb_trainer as vt
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.extraction import crop_starts
from pyspeaker.metrics import kaldi_min_dcf, voxceleb_trainer_eer
from pyspeaker.models import build_model
from pyspeaker.models.frontend import normalize_input
from pyspeaker.scoring.crops import crop_scores

from conftest import SHARED, run_cli

VT_DIR = SHARED / "compat" / "voxceleb_trainer"
FIXTURE = VT_DIR / "fixture_ResNetSE34L"
PREFIX = "ResNetSE34L_SAP_angleproto"
# manifest -> voxceleb_trainer flags (model, encoder_type, n_mels)
CASES = {
    "ResNetSE34L_SAP_angleproto": ("ResNetSE34L", "SAP", 40),
    "ResNetSE34L_ASP_angleproto": ("ResNetSE34L", "ASP", 40),
    "ResNetSE34V2_SAP_softmaxproto": ("ResNetSE34V2", "SAP", 64),
    "ResNetSE34V2_ASP_softmaxproto": ("ResNetSE34V2", "ASP", 64),
    "VGGVox_SAP_angleproto": ("VGGVox", "SAP", 40),
}
FC_IN = {"ResNetSE34L_SAP_angleproto": 128, "ResNetSE34L_ASP_angleproto": 256, "ResNetSE34V2_SAP_softmaxproto": 2048,
         "ResNetSE34V2_ASP_softmaxproto": 4096, "VGGVox_SAP_angleproto": 512}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def need(path):
    if not path.exists():
        pytest.skip(f"{path} not found: the voxceleb_trainer reference material in ../shared is not checked out")
    return path


def synthetic_state(case: str, seed: int = 0) -> OrderedDict:
    """A SpeakerNet state dict with exactly the manifest's keys, shapes and dtypes, random values."""
    rows = json.loads(need(VT_DIR / f"{case}.json").read_text())
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape, dtype in rows:
        if dtype == "int64":
            state[key] = torch.tensor(3, dtype=torch.int64)
        elif key.endswith("running_var") or ".torchfb." in key:  # positive: variances, window, filterbank
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


# ----------------------------------------------------------------------------- the fixture

@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """voxceleb-eval on the fixture, as a user runs it (one CLI run shared by the fixture tests)."""
    need(FIXTURE / "reference.npz")
    out = tmp_path_factory.mktemp("vt_fixture")
    proc = run_cli("voxceleb-eval", "--eval", "--model", "ResNetSE34L", "--log_input", "True", "--trainfunc",
                   "angleproto", "--eval_frames", "400", "--initial_model", FIXTURE / f"{PREFIX}.model",
                   "--test_list", FIXTURE / "trials.txt", "--test_path", FIXTURE / "wavs",
                   "--save-scores", out / "scores.txt", "--save-embeddings", out / "emb.npz", "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    return proc, out, np.load(FIXTURE / "reference.npz")


def test_fixture_embeddings_match_voxceleb_trainer(fixture_run):
    _, out, ref = fixture_run
    emb = np.load(out / "emb.npz")
    assert sorted(emb.files) == sorted(ref["wav_names"].tolist())
    for name in ref["wav_names"]:
        assert emb[name].dtype == np.float32 and emb[name].shape == (10, 512)
        np.testing.assert_allclose(emb[name], ref[f"{PREFIX}__emb__{name}"], rtol=0, atol=1e-4)


def test_fixture_scores_and_eer_match_voxceleb_trainer(fixture_run):
    proc, out, ref = fixture_run
    rows = [line.split() for line in (out / "scores.txt").read_text().splitlines()]
    assert [r[1:] for r in rows] == [[str(l), e, t] for l, e, t in
                                     zip(ref["trial_labels"], ref["trial_enroll"], ref["trial_test"])]
    np.testing.assert_allclose([float(r[0]) for r in rows], ref[f"{PREFIX}__scores"], rtol=0, atol=1e-4)
    ref_scores, is_target = ref[f"{PREFIX}__scores"].astype(np.float32), ref["trial_labels"] == 1
    expected_eer = 100 * voxceleb_trainer_eer(ref_scores[is_target], ref_scores[~is_target])
    assert proc.stdout.splitlines() == [f"EER {expected_eer:.4f}", "MinDCF 0.50000"]
    assert "Model ResNetSE34L has 1437078 parameters" in proc.stderr


def test_fixture_crops_and_features_match_voxceleb_trainer():
    ref = np.load(need(FIXTURE / "reference.npz"))
    model = vt.load_model(FIXTURE / f"{PREFIX}.model", "ResNetSE34L", "SAP", 512, 40, log_input=True)
    for name in ref["wav_names"]:
        audio, rate = read_audio_file(FIXTURE / "wavs" / name)
        assert rate == 16000 and len(audio) == ref[f"wavlen__{name}"]
        crops = vt.eval_input(audio, 400)
        assert crops.shape == (10, 64240) and crops.dtype == np.float32
        padded_len = int(ref[f"padded_len__{name}"])
        assert padded_len == max(len(audio), 64240 + 1)  # files no longer than a crop: crop + 1 samples
        starts = crop_starts(padded_len, 64240, 10)
        assert starts.tolist() == ref[f"crop_starts__{name}"].tolist()
        padded = np.pad(audio, (0, padded_len - len(audio)), mode="wrap")
        assert all(np.array_equal(crops[k], padded[s:s + 64240]) for k, s in enumerate(starts))
        crops64 = crops.astype(np.float64)
        np.testing.assert_allclose([crops64.sum(), (crops64 ** 2).sum()], ref[f"input_crops_checksum__{name}"],
                                   rtol=1e-9, atol=1e-6)
        feats = normalize_input(model.features(torch.from_numpy(crops[:1])), "instance")[0].numpy()
        # float32 STFT rounding differs between CPUs' SIMD paths; after log and instance norm a
        # near-empty mel bin shows it (1 value of 16,080 at 1.08e-4 on one machine kind)
        np.testing.assert_allclose(feats, ref[f"{PREFIX}__feat_crop0__{name}"], rtol=0, atol=2e-4)


def test_batched_scores_equal_voxceleb_trainers_per_trial_loop():
    ref = np.load(need(FIXTURE / "reference.npz"))
    names = sorted(ref["wav_names"].tolist())
    emb = np.stack([ref[f"{PREFIX}__emb__{n}"] for n in names])
    row = {n: i for i, n in enumerate(names)}
    rows_e = np.array([row[n] for n in ref["trial_enroll"]])
    rows_t = np.array([row[n] for n in ref["trial_test"]])
    for normalize in (True, False):
        batched = crop_scores(emb, rows_e, emb, rows_t, normalize, chunk=3)
        loop = []
        for e, t in zip(rows_e, rows_t):  # SpeakerNet.evaluateFromList, one trial at a time
            a, b = torch.from_numpy(emb[e]), torch.from_numpy(emb[t])
            if normalize:
                a, b = torch.nn.functional.normalize(a, p=2, dim=1), torch.nn.functional.normalize(b, p=2, dim=1)
            loop.append(-1 * np.mean(torch.cdist(a.reshape(10, -1), b.reshape(10, -1)).numpy()))
        assert batched.dtype == np.float32
        assert batched.tolist() == np.array(loop, dtype=np.float32).tolist()
    np.testing.assert_allclose(crop_scores(emb, rows_e, emb, rows_t), ref[f"{PREFIX}__scores"], rtol=0, atol=1e-6)
    # separate enroll and test crop sets (``pyspeaker score`` with --test-embeddings) give the same
    np.testing.assert_array_equal(crop_scores(emb, rows_e, emb.copy(), rows_t), crop_scores(emb, rows_e, emb, rows_t))


# ----------------------------------------------------------------------------- strict loading

@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_checkpoints_load_strictly_in_every_format(case, tmp_path):
    model_name, encoder, n_mels = CASES[case]
    state = synthetic_state(case)
    speaker = OrderedDict((k[len("__S__."):], v) for k, v in state.items() if k.startswith("__S__."))
    files = {
        "new": {"model_state_dict": state, "optimizer_state_dict": {}, "scheduler_state_dict": {}, "epoch": 3},
        "bare": state,
        "model_only": {"model": speaker},
        "module_prefix": OrderedDict((k.replace("__S__.", "module.__S__."), v) for k, v in state.items()),
    }
    outputs = []
    for fmt, payload in files.items():
        torch.save(payload, tmp_path / f"{fmt}.model")
        net = vt.load_model(tmp_path / f"{fmt}.model", model_name, encoder, 512, n_mels, log_input=True)
        loaded = net.state_dict()
        for key, value in speaker.items():  # every tensor, front-end buffers included, comes from the file
            target = key if key.startswith("torchfb.") else f"model.{key}"
            assert torch.equal(loaded[target], value), (fmt, key)
        if not outputs:  # the network runs on a waveform (one 100-frame crop)
            with torch.no_grad():
                outputs.append(net(torch.randn(1, 16240) * 0.1))
            assert outputs[0].shape == (1, 512) and torch.isfinite(outputs[0]).all()


def test_module_prefix_is_dropped_only_at_the_start_of_a_key(tmp_path):
    state = synthetic_state(PREFIX)
    bare_guess = vt.guess_settings(state)
    assert bare_guess == {"model": "ResNetSE34L", "encoder_type": "SAP", "nOut": 512, "n_mels": 40}
    # DataParallel around the whole SpeakerNet, or around the speaker model alone (inside __S__.)
    wrapped = OrderedDict((f"module.{k}", v) for k, v in state.items())
    inner = OrderedDict((k.replace("__S__.", "__S__.module.", 1), v) for k, v in state.items())
    for payload in (wrapped, inner):
        assert vt.guess_settings(payload) == bare_guess
        torch.save(payload, tmp_path / "dp.model")
        net = vt.load_model(tmp_path / "dp.model", "ResNetSE34L", "SAP", 512, 40, log_input=True)
        assert torch.equal(net.model.fc.weight, state["__S__.fc.weight"])
    # ``module.`` inside a key is part of the name: __S__.fc.module.weight is not __S__.fc.weight
    renamed = OrderedDict((k.replace("__S__.fc.weight", "__S__.fc.module.weight"), v) for k, v in state.items())
    msg = _refused(renamed, tmp_path, "ResNetSE34L", "SAP", 40)
    assert "key __S__.fc.module.weight: shape [512, 128] in the checkpoint, not in the model" in msg
    net = build_model("ResNetSE34L", nOut=512, encoder_type="SAP", n_mels=40)
    with pytest.raises(DataError, match="key __S__.fc.module.weight"):
        vt.match_state(renamed, net)


def _refused(state, tmp_path, model, encoder, n_mels, nout=512):
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(DataError) as info:
        vt.load_model(tmp_path / "bad.model", model, encoder, nout, n_mels, log_input=True)
    assert str(tmp_path / "bad.model") in str(info.value)
    return info.value.message


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupted_checkpoints_are_refused_naming_the_key_and_both_shapes(case, tmp_path):
    model_name, encoder, n_mels = CASES[case]
    fc_in = FC_IN[case]

    missing = synthetic_state(case)
    del missing["__S__.fc.bias"]
    msg = _refused(missing, tmp_path, model_name, encoder, n_mels)
    assert "key __S__.fc.bias: missing from the checkpoint, shape [512] in the model" in msg

    extra = synthetic_state(case)
    extra["__S__.bogus.weight"] = torch.zeros(3, 4)
    msg = _refused(extra, tmp_path, model_name, encoder, n_mels)
    assert "key __S__.bogus.weight: shape [3, 4] in the checkpoint, not in the model" in msg

    wrong = synthetic_state(case)
    wrong["__S__.fc.weight"] = torch.zeros(256, fc_in)
    msg = _refused(wrong, tmp_path, model_name, encoder, n_mels)
    assert f"key __S__.fc.weight: shape [256, {fc_in}] in the checkpoint, [512, {fc_in}] in the model" in msg
    assert f"looks like --model {model_name} --encoder_type {encoder} --nOut 256" in msg

    # nOut given wrongly on the command line: the same key, shapes the other way round
    msg = _refused(synthetic_state(case), tmp_path, model_name, encoder, n_mels, nout=192)
    assert f"key __S__.fc.weight: shape [512, {fc_in}] in the checkpoint, [192, {fc_in}] in the model" in msg


def test_wrong_n_mels_and_wrong_model_are_refused(tmp_path):
    msg = _refused(synthetic_state("ResNetSE34L_SAP_angleproto"), tmp_path, "ResNetSE34L", "SAP", 64)
    assert msg.startswith("checkpoint does not match the model ResNetSE34L (encoder SAP, nOut 512, n_mels 64) - "
                          "key __S__.torchfb.mel_scale.fb: shape [257, 40] in the checkpoint, [257, 64] in the model")
    assert msg.endswith("; the checkpoint looks like --model ResNetSE34L --encoder_type SAP --nOut 512 --n_mels 40")

    msg = _refused(synthetic_state("ResNetSE34V2_ASP_softmaxproto"), tmp_path, "ResNetSE34V2", "ASP", 40)
    assert "key __S__.torchfb.1.mel_scale.fb: shape [257, 64] in the checkpoint, [257, 40] in the model" in msg

    msg = _refused(synthetic_state("ResNetSE34V2_ASP_softmaxproto"), tmp_path, "ResNetSE34L", "SAP", 40)
    assert "key __S__.conv1.weight: shape [32, 1, 3, 3] in the checkpoint, [16, 1, 7, 7] in the model" in msg
    assert "more mismatching keys" in msg and "looks like --model ResNetSE34V2 --encoder_type ASP --nOut 512 --n_mels 64" in msg

    msg = _refused(synthetic_state("ResNetSE34L_ASP_angleproto"), tmp_path, "ResNetSE34L", "SAP", 40)
    assert "key __S__.fc.weight: shape [512, 256] in the checkpoint, [512, 128] in the model" in msg

    # voxceleb_trainer's VGGVox ignores --n_mels (always 40): so does the loader
    torch.save(synthetic_state("VGGVox_SAP_angleproto"), tmp_path / "vgg.model")
    assert vt.load_model(tmp_path / "vgg.model", "VGGVox", "SAP", 512, 64).n_mels == 40


def test_unreadable_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read as a voxceleb_trainer checkpoint"):
        vt.read_state(tmp_path / "junk.model")
    with pytest.raises(DataError, match="checkpoint not found"):
        vt.read_state(tmp_path / "none.model")
    torch.save({"model": {"a": 1}, "model_options": {}}, tmp_path / "ours.pt")
    with pytest.raises(DataError, match="this is a pyspeaker checkpoint"):
        vt.read_state(tmp_path / "ours.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.model")
    with pytest.raises(DataError, match="holds a list, not a state dict"):
        vt.read_state(tmp_path / "list.model")
    with pytest.raises(ConfigError, match="voxceleb_trainer's VGGVox has no encoder_type 'ASP'; valid: SAP, TAP, MAX"):
        vt.load_model(tmp_path / "list.model", "VGGVox", "ASP")
    with pytest.raises(ConfigError, match="voxceleb_trainer model 'RawNet3' is not supported"):
        vt.load_model(tmp_path / "list.model", "RawNet3", "ECA")


def test_cli_refuses_a_mismatching_checkpoint(tmp_path):
    torch.save(synthetic_state("ResNetSE34L_SAP_angleproto"), tmp_path / "lite.model")
    (tmp_path / "list.txt").write_text("1 a.wav b.wav\n")
    proc = run_cli("voxceleb-eval", "--model", "ResNetSE34L", "--encoder_type", "ASP", "--trainfunc", "angleproto",
                   "--initial_model", tmp_path / "lite.model", "--test_list", tmp_path / "list.txt",
                   "--test_path", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'lite.model'}: checkpoint does not match the model ResNetSE34L (encoder ASP, nOut 512, "
        "n_mels 40) - key __S__.fc.weight: shape [512, 128] in the checkpoint, [512, 256] in the model")


# ----------------------------------------------------------------------------- init_from and export

def test_init_from_copies_weights_into_a_feature_network(tmp_path):
    state = synthetic_state("ResNetSE34L_SAP_angleproto")
    torch.save({"model_state_dict": state, "epoch": 1, "optimizer_state_dict": {}, "scheduler_state_dict": {}},
               tmp_path / "lite.model")
    net = build_model("ResNetSE34L", nOut=512, encoder_type="SAP", n_mels=40)
    assert vt.init_from(net, tmp_path / "lite.model") is net
    assert torch.equal(net.conv1.weight, state["__S__.conv1.weight"])
    assert torch.equal(net.layer3[2].bn1.running_var, state["__S__.layer3.2.bn1.running_var"])
    with pytest.raises(DataError, match=r"key __S__.torchfb.mel_scale.fb: shape \[257, 40\] in the checkpoint, "
                                        r"\[257, 30\] in the model"):
        vt.init_from(build_model("ResNetSE34L", n_mels=30), tmp_path / "lite.model")


@pytest.mark.parametrize("case", ["ResNetSE34L_SAP_angleproto", "ResNetSE34V2_ASP_softmaxproto", "VGGVox_SAP_angleproto"])
def test_export_writes_voxceleb_trainer_keys_and_loads_back(case, tmp_path):
    model_name, encoder, n_mels = CASES[case]
    torch.manual_seed(1)
    model = build_model(model_name, nOut=512, encoder_type=encoder, n_mels=n_mels, waveform=True).eval()
    loss = {"w": torch.tensor(10.0), "b": torch.tensor(-5.0)} if "angleproto" in case else {
        "softmax.fc.weight": torch.zeros(5994, 512), "softmax.fc.bias": torch.zeros(5994),
        "angleproto.w": torch.tensor(10.0), "angleproto.b": torch.tensor(-5.0)}
    manifest = {k: s for k, s, _ in json.loads(need(VT_DIR / f"{case}.json").read_text())}
    for fmt in ("bare", "new"):
        path = tmp_path / f"{fmt}.model"
        written = vt.export_checkpoint(model, path, fmt=fmt, loss_state=loss, epoch=7)
        assert {k: list(v.shape) for k, v in written.items()} == manifest
        raw = torch.load(path, weights_only=True)
        assert ("model_state_dict" in raw and raw["epoch"] == 7) if fmt == "new" else "__S__.fc.weight" in raw
        back = vt.load_model(path, model_name, encoder, 512, n_mels, log_input=True)
        wav = torch.randn(2, 16240) * 0.1
        with torch.no_grad():
            assert torch.equal(back(wav), model(wav))
    # a feature network gets the front-end buffers of its own n_mels
    written = vt.export_checkpoint(model.model, tmp_path / "net.model")
    assert {k: list(v.shape) for k, v in written.items()} == {k: s for k, s in manifest.items() if k.startswith("__S__.")}


def test_export_refuses_what_voxceleb_trainer_cannot_build(tmp_path):
    with pytest.raises(ConfigError, match="voxceleb_trainer model 'TDNN' is not supported"):
        vt.export_checkpoint(build_model("TDNN"), tmp_path / "x.model")
    with pytest.raises(ConfigError, match="voxceleb_trainer's ResNetSE34L has no encoder_type 'STATS'"):
        vt.export_checkpoint(build_model("ResNetSE34L", encoder_type="STATS"), tmp_path / "x.model")
    with pytest.raises(ConfigError, match="always instance-normalises"):
        vt.export_checkpoint(build_model("ResNetSE34L", input_norm="mean"), tmp_path / "x.model")
    assert not (tmp_path / "x.model").exists()


# ----------------------------------------------------------------------------- crops, metrics, CLI outputs

def test_eval_crops_follow_voxceleb_trainers_rules():
    short = np.arange(1000, dtype=np.float32)
    crops = vt.eval_input(short, 10)  # crop = 1840 samples; extended to 1841
    assert crops.shape == (10, 1840) and crops.dtype == np.float32
    assert crops[:, 0].tolist() == [0] * 9 + [1]  # the starts
    assert crops[0, 999:1002].tolist() == [999, 0, 1]  # wrapped: repeated from the start
    assert crops[-1, -1] == 840  # sample 1840 of the extended file
    long = np.arange(5000, dtype=np.float32)
    crops = vt.eval_input(long, 10)
    assert crops[:, 0].tolist() == np.linspace(0, 5000 - 1840, 10).astype(int).tolist() and crops[-1, 0] == 3160
    assert crops[-1, -1] == 4999
    assert vt.eval_input(long, 0).tolist() == [long.tolist()]
    assert vt.eval_input(short[:100], 0).shape == (1, 241)  # whole file, extended to crop(0) + 1 = 241


def _sklearn_style_eer(scores, labels):
    """voxceleb_trainer's tuneThresholdfromScore on sklearn.metrics.roc_curve's points, written as
    sklearn's loops (one point per distinct score, drop_intermediate, (0, 0) first)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tps, fps, thresholds = [], [], []
    tp = fp = 0
    for k, i in enumerate(order):
        tp, fp = tp + (labels[i] == 1), fp + (labels[i] != 1)
        if k + 1 == len(order) or scores[order[k + 1]] != scores[i]:
            tps.append(tp), fps.append(fp), thresholds.append(scores[i])
    if len(fps) > 2:
        keep = [0] + [k for k in range(1, len(fps) - 1)
                      if fps[k - 1] - 2 * fps[k] + fps[k + 1] or tps[k - 1] - 2 * tps[k] + tps[k + 1]] + [len(fps) - 1]
        tps, fps = [tps[k] for k in keep], [fps[k] for k in keep]
    fpr = [0.0] + [f / fps[-1] for f in fps]
    fnr = [1.0] + [1 - t / tps[-1] for t in tps]
    gaps = [abs(n - f) for f, n in zip(fpr, fnr)]
    i = gaps.index(min(gaps))
    return max(fpr[i], fnr[i])


def _vt(scores, labels):
    scores, labels = np.asarray(scores), np.asarray(labels) == 1
    return voxceleb_trainer_eer(scores[labels], scores[~labels])


def test_voxceleb_trainer_eer_uses_sklearns_reduced_roc_points():
    # scores descending: T N N N N T T. Over all ROC points the best |FNR - FPR| is at FPR 3/4, FNR 2/3
    # (EER 75 %); sklearn's drop_intermediate removes the points inside the evenly stepped runs (the
    # non-targets 0.8-0.6 and the target 0.4), so the best kept point is FPR 1, FNR 2/3: EER 100 %.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], dtype=np.float32)
    labels = np.array([1, 0, 0, 0, 0, 1, 1])
    assert _vt(scores, labels) == 1.0 == _sklearn_style_eer(scores.tolist(), labels.tolist())
    assert _vt(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 0.0
    # ties: one point per distinct score
    assert _vt(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 1, 0])) == 0.5
    rng = np.random.default_rng(0)
    for k in range(300):  # random lists, with ties in a third of them: the same float as the loops
        n = int(rng.integers(2, 40))
        s = rng.normal(size=n).astype(np.float32)
        s = np.round(s, 1) if k % 3 == 0 else s
        lab = rng.integers(0, 2, n)
        lab[:2] = [0, 1]
        assert _vt(s, lab) == _sklearn_style_eer(s.tolist(), lab.tolist()), (s, lab)
    # minDCF sweeps the trials one by one (threshold at each score, ascending): P_miss 1/3, 1/3, 2/3, 1 and
    # P_fa 1, 0, 0, 0; the best cost 0.05 * 1/3 + 0.95 * 0, divided by c_def = 0.05, is 1/3
    dcf, _ = kaldi_min_dcf(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 1, 1]), 0.05)
    assert dcf == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no target"):
        voxceleb_trainer_eer([], [1.0, 2.0])


def test_trial_list_paths_are_files_never_commands(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(DataError, match="audio file not found"):
        read_audio_file(f"touch {marker} |")
    assert not marker.exists()


def test_cli_choices_are_the_compat_settings():
    from pyspeaker.commands import voxceleb_eval

    assert set(voxceleb_eval._VT_MODELS) == set(vt.VT_ENCODERS)
    assert set(voxceleb_eval._VT_LOSSES) == set(vt.TEST_NORMALIZE)


def test_cli_outputs_on_nested_paths_and_unlabeled_lists(tmp_path):
    torch.save(synthetic_state("ResNetSE34L_SAP_angleproto"), tmp_path / "lite.model")
    rng = np.random.default_rng(0)
    wavs = tmp_path / "wavs"
    names = ["id1/v1/00001.wav", "id1/v2/00002.wav", "id2/v1/00001.wav"]
    for i, name in enumerate(names):
        (wavs / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(wavs / name, (rng.normal(0, 0.1, 8000 + 9000 * i)).astype(np.float32), 16000, subtype="PCM_16")
    (tmp_path / "list.txt").write_text(f"1 {names[0]} {names[1]}\n0 {names[2]} {names[0]}\n0 {names[1]} {names[2]}\n")
    common = ["--model", "ResNetSE34L", "--trainfunc", "proto", "--log_input", "true", "--eval_frames", "50",
              "--initial_model", tmp_path / "lite.model", "--test_path", wavs, "--threads", "1"]
    proc = run_cli("voxceleb-eval", *common, "--test_list", tmp_path / "list.txt", "--save-scores",
                   tmp_path / "s.txt", "--save-embeddings", tmp_path / "e.npz", check=True)
    emb = np.load(tmp_path / "e.npz")
    assert sorted(emb.files) == sorted(names) and all(emb[n].shape == (10, 512) for n in names)
    rows = [line.split() for line in (tmp_path / "s.txt").read_text().splitlines()]
    assert [r[1:] for r in rows] == [["1", names[0], names[1]], ["0", names[2], names[0]], ["0", names[1], names[2]]]
    # proto: no normalisation, so the score is minus the mean distance of the raw embeddings
    d = torch.cdist(torch.from_numpy(emb[names[0]]), torch.from_numpy(emb[names[1]])).numpy()
    assert float(rows[0][0]) == pytest.approx(-d.mean(), abs=2e-6)
    assert proc.stdout.splitlines()[0].startswith("EER ")

    (tmp_path / "pairs.txt").write_text(f"{names[0]} {names[1]}\n")
    proc = run_cli("voxceleb-eval", *common, "--test_list", tmp_path / "pairs.txt", "--save-scores",
                   tmp_path / "p.txt", check=True)
    assert proc.stdout == "" and "has no labels: no EER" in proc.stderr
    assert (tmp_path / "p.txt").read_text().split()[1:] == ["-", names[0], names[1]]

    (tmp_path / "targets.txt").write_text(f"1 {names[0]} {names[1]}\n")
    proc = run_cli("voxceleb-eval", *common, "--test_list", tmp_path / "targets.txt")
    assert proc.returncode == 1 and proc.stderr.strip().endswith(
        "error: the trial list needs both target (1) and non-target (0) trials for an EER")

    (tmp_path / "missing.txt").write_text("1 id1/v1/00001.wav id9/none.wav\n")
    proc = run_cli("voxceleb-eval", *common, "--test_list", tmp_path / "missing.txt")
    assert proc.returncode == 1 and proc.stderr.strip().endswith(f"error: {wavs / 'id9/none.wav'}: audio file not found")
