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
from pyspeaker.training.data import CropDataset, crop_frames, read_utt2spk
from pyspeaker.training.trainer import train

from conftest import run_cli

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
    assert rows[0] == "epoch\tloss\taccuracy\tlr\tseconds" and len(rows) == 4
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
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown model 'Nope'; valid models: ResNetSE34L, ")
