"""Training and extraction on a small real feature store: files, numbers, determinism, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from pyspeaker.errors import ConfigError
from pyspeaker.extraction import extract_store
from pyspeaker.models import build_model, count_parameters
from pyspeaker.store import FeatureStore, load_embeddings
from pyspeaker.training.checkpoint import model_from_checkpoint
from pyspeaker.training.config import load_config
from pyspeaker.data import read_utt2spk
from pyspeaker.training.data import CropDataset, crop_frames
from pyspeaker.training.trainer import train

from conftest import TINY_MODELS, run_cli

TINY = ["train.max_epoch=3", "data.batch_size=8", "data.crop_frames=40", "model.nOut=32", "optim.lr=0.005",
        "train.device=cpu"]


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["optim.lr=0.01", "loss.margin=0.1", "model.name=ResNetSE34L"])
    assert cfg["optim"]["lr"] == 0.01 and cfg["loss"] == {"name": "amsoftmax", "margin": 0.1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown setting optim.lrr; valid here: .*lr"):
        load_config(bad)
    bad.write_text("optim: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data.batch_size must be a positive integer"):
        load_config(None, ["data.batch_size=0"])


@pytest.mark.parametrize("loss", ["angleproto", "proto", "ge2e", "triplet", "softmaxproto"])
def test_metric_losses_refuse_repeated_speakers_in_a_batch(loss, tmp_path):
    # their negatives are the other rows of the batch: a repeated speaker would be its own negative
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"loss.name={loss}", "data.unique_speakers=false"])
    assert str(e.value).endswith(f"loss {loss} compares the speakers of a batch with each other (each row's "
                                 "negatives are the other rows), so a speaker must not appear twice: "
                                 "data.unique_speakers must be true (--set data.unique_speakers=true)")
    conf = tmp_path / "metric.yaml"
    conf.write_text(f"loss:\n  name: {loss}\ndata:\n  unique_speakers: false\n")
    with pytest.raises(ConfigError, match=f"metric.yaml: loss {loss} compares the speakers"):
        load_config(conf)
    assert load_config(None, [f"loss.name={loss}"])["data"]["unique_speakers"] is True


@pytest.mark.parametrize("loss", ["softmax", "amsoftmax", "aamsoftmax"])
def test_classification_losses_may_repeat_speakers(loss):
    assert load_config(None, [f"loss.name={loss}", "data.unique_speakers=false"])["data"]["unique_speakers"] is False


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'ResNet99'; valid models: ResNetSE34L"):
        build_model("ResNet99")


def test_resnetse34l_matches_voxceleb_trainer_parameter_count():
    # The manifests in ../shared/compat/voxceleb_trainer count 1,437,078 (SAP) and 1,502,614 (ASP)
    assert count_parameters(build_model("ResNetSE34L", nOut=512, n_mels=40, encoder_type="SAP")) == 1437078
    assert count_parameters(build_model("ResNetSE34L", nOut=512, n_mels=40, encoder_type="ASP")) == 1502614


def test_crops_wrap_short_utterances_and_are_seeded(speaker_store):
    short = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert crop_frames(short, 5, 0)[:, 0].tolist() == [0, 2, 4, 0, 2]
    ds = CropDataset(FeatureStore(speaker_store), read_utt2spk(speaker_store / "utt2spk"), crop=40, seed=3)
    a, la = ds[5]
    b, lb = ds[5]
    assert a.shape == (40, 20) and la == lb and torch.equal(a, b)
    ds.set_epoch(1)
    assert not torch.equal(ds[5][0], a)  # a new epoch draws a new crop
    assert ds.speakers == ["spk00", "spk01", "spk02", "spk03"]


def test_train_writes_outputs_and_learns(speaker_store, tmp_path):
    torch.set_num_threads(1)
    exp = tmp_path / "exp"
    final = train(load_config(None, TINY), speaker_store, exp, progress=False)
    assert final == exp / "checkpoints" / "final.pt"
    for name in ("init.pt", "epoch_0001.pt", "epoch_0002.pt", "epoch_0003.pt", "final.pt"):
        assert (exp / "checkpoints" / name).is_file()
    rows = (exp / "metrics.tsv").read_text().splitlines()
    assert rows[0] == "epoch\tloss\taccuracy\tlr\tseconds\tcrops_per_s\tdata_wait_pct" and len(rows) == 4
    for r in rows[1:]:  # how fast each epoch went and its share of waiting for the loader
        speed, wait = map(float, r.split("\t")[5:7])
        assert speed > 0 and 0 <= wait < 100
    log_line = next(line for line in (exp / "train.log").read_text().splitlines() if "epoch 1/3" in line)
    assert "crops/s, data wait" in log_line
    losses = [float(r.split("\t")[1]) for r in rows[1:]]
    assert losses[-1] < losses[0]
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["model"]["nOut"] == 32 and saved["train"]["max_epoch"] == 3
    log = (exp / "train.log").read_text()
    assert "Model ResNetSE34L has" in log and "4 speakers, 24 utterances, feature dim 20" in log
    model, ckpt = model_from_checkpoint(final)
    assert ckpt["epoch"] == 3 and ckpt["speakers"] == ["spk00", "spk01", "spk02", "spk03"]
    init, _ = model_from_checkpoint(exp / "checkpoints" / "init.pt")
    assert not torch.equal(model.fc.weight, init.fc.weight)


def test_extraction_is_independent_of_batching(tmp_path):
    from conftest import make_speaker_store

    store_dir = make_speaker_store(tmp_path / "s", lengths=(50, 52))  # few distinct lengths -> real batches
    torch.manual_seed(0)
    model = build_model("ResNetSE34L", nOut=16, n_mels=20).eval()
    store = FeatureStore(store_dir)
    ids1, one = extract_store(model, store, max_batch_frames=1, progress=False)       # one utterance per batch
    ids2, many = extract_store(model, store, max_batch_frames=10**6, progress=False)  # all equal lengths together
    assert ids1 == ids2 == store.ids
    np.testing.assert_allclose(one, many, rtol=0, atol=1e-5)
    ref = model(torch.from_numpy(store.read(7))[None]).detach().numpy()[0]
    np.testing.assert_allclose(one[7], ref, atol=1e-5)


def test_length_batches_group_equal_lengths_within_the_frame_budget():
    from pyspeaker.extraction import length_batches

    # lengths 3 (positions 1, 3): up to 10 // 3 = 3 per batch; lengths 5 (0, 2, 4): 2 per batch
    assert list(length_batches([5, 3, 5, 3, 5], 10)) == [[1, 3], [0, 2], [4]]
    assert list(length_batches([50, 50], 1)) == [[0], [1]]  # one per batch when one is over the budget
    assert list(length_batches([], 10)) == []


def test_train_and_extract_commands(speaker_store, tmp_path):
    exp = tmp_path / "exp"
    args = [a for kv in TINY[1:] + ["train.max_epoch=1"] for a in ("--set", kv)]
    proc = run_cli("train", "--config", "conf/resnet34l_amsoftmax.yaml", "--features", speaker_store,
                   "--exp-dir", exp, "--threads", "1", *args, check=True)
    assert proc.stdout.strip() == str(exp / "checkpoints" / "final.pt")
    assert "has" in proc.stderr and "parameters" in proc.stderr
    out = tmp_path / "emb"
    run_cli("extract", "--checkpoint", exp / "checkpoints" / "final.pt", "--features", speaker_store,
            "--out", out, "--threads", "1", check=True)
    ids, emb = load_embeddings(out)
    assert len(ids) == 24 and emb.shape == (24, 32)
    bad = run_cli("train", "--config", "conf/resnet34l_amsoftmax.yaml", "--features", speaker_store,
                  "--exp-dir", exp, "--set", "model.name=Nope")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith(
        "error: --set model.name=Nope: unknown model 'Nope'; valid models: ResNetSE34L, ")


def test_crop_mode_matches_voxceleb_trainer_rule_and_jobs(tmp_path, speaker_store):
    from pyspeaker.extraction import crop_starts, eval_crops
    from pyspeaker.scoring.crops import crop_scores
    from pyspeaker.store.embeddings import load_crop_embeddings

    assert crop_starts(50, 40, 10).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert crop_starts(30, 40, 3).tolist() == [0, 0, 0]
    short = np.arange(30, dtype=np.float32)[:, None]
    assert eval_crops(short, 40, 2)[0, :, 0].tolist() == list(range(30)) + list(range(10))
    torch.manual_seed(0)
    model = build_model("ResNetSE34L", nOut=16, n_mels=20).eval()
    store = FeatureStore(speaker_store)
    ids, mean, crops = extract_store(model, store, eval_frames=40, num_eval=4, progress=False)
    assert crops.shape == (24, 4, 16) and mean.shape == (24, 16)
    direct = model(torch.from_numpy(eval_crops(store.read(3), 40, 4))).detach().numpy()
    np.testing.assert_allclose(crops[3], direct, atol=1e-5)
    # voxceleb_trainer's score: -mean(cdist(normalised rows)), checked against torch.cdist
    a, b = torch.nn.functional.normalize(torch.from_numpy(crops[0]), dim=1), \
        torch.nn.functional.normalize(torch.from_numpy(crops[5]), dim=1)
    ref = -torch.cdist(a[None], b[None]).mean().item()
    assert crop_scores(crops, np.array([0]), crops, np.array([5]))[0] == pytest.approx(ref, abs=1e-5)
    # the command, in 2 jobs, gives the same vectors as in-process extraction
    from pyspeaker.training.checkpoint import save_checkpoint
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "epoch": 0, "feat_id": "test_0000",
                           "model_options": {"name": "ResNetSE34L", "nOut": 16, "n_mels": 20}})
    run_cli("extract", "--checkpoint", ckpt, "--features", speaker_store, "--out", tmp_path / "emb",
            "--eval-frames", "40", "--num-eval", "4", "--nj", "2", check=True)
    ids2, crops2 = load_crop_embeddings(tmp_path / "emb")
    assert ids2 == ids
    np.testing.assert_allclose(crops2, crops, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["extract.emb.1.log", "extract.emb.2.log"]
    assert (tmp_path / "emb" / "num_utts.ark").read_text().startswith("spk00    6\n")




@pytest.mark.parametrize("name", list(TINY_MODELS))
@pytest.mark.parametrize("pooling", ["SAP", "ASP", "TAP", "MAX", "STATS"])
def test_every_model_and_pooling_trains_with_the_training_step(name, pooling):
    """The trainer's step (SpeakerNet: network + loss, optimiser from the config): loss goes down."""
    from pyspeaker.losses import build_loss
    from pyspeaker.training.step import SpeakerNet, make_optimizer

    torch.set_num_threads(1)
    options, frames = TINY_MODELS[name]
    torch.manual_seed(0)
    cfg = load_config(None, ["optim.lr=0.005"])
    net = SpeakerNet(build_model(name, nOut=8, encoder_type=pooling, **options), build_loss("softmax", 8, 4))
    opt = make_optimizer(cfg, net.parameters())
    feats = torch.randn(8, frames, options["n_mels"])
    feats[4:, :, : options["n_mels"] // 2] += 1.0  # speakers that differ in their spectra
    labels = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    net.train()
    losses = []
    for _ in range(4):
        loss, acc = net(feats, labels, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("conf,model_name,loss_name,n_per", [
    ("resnet34l_amsoftmax.yaml", "ResNetSE34L", "amsoftmax", 1),
    ("resnet34l_angleproto.yaml", "ResNetSE34L", "angleproto", 2),
    ("resnet34v2_softmaxproto.yaml", "ResNetSE34V2", "softmaxproto", 2),
    ("tdnn_softmax.yaml", "TDNN", "softmax", 1),
    ("ecapa_aamsoftmax.yaml", "ECAPA-TDNN", "aamsoftmax", 1),
])
def test_lab_configs_load_and_build(conf, model_name, loss_name, n_per):
    from conftest import REPO
    from pyspeaker.losses import build_loss
    from pyspeaker.training.step import model_options

    cfg = load_config(REPO / "conf" / conf)
    assert (cfg["model"]["name"], cfg["loss"]["name"], cfg["data"]["nPerSpeaker"]) == (model_name, loss_name, n_per)
    waveform = bool(cfg["model"].get("waveform"))
    model = build_model(**model_options(cfg, None if waveform else 40))
    build_loss(nOut=cfg["model"]["nOut"], num_classes=10, **cfg["loss"])
    if conf == "resnet34l_amsoftmax.yaml":
        assert (cfg["loss"]["scale"], cfg["loss"]["margin"]) == (30, 0.3)
    if waveform:  # ResNetSE34V2: 64 mel bins, log input, voxceleb_trainer's front-end
        assert model.n_mels == 64 and model.log_input
