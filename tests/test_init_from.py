"""Fine-tuning: train --init-from a trained or imported model, and train.freeze (real tiny trainings)."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FBANK, REPO, TINY_TDNN_TRAIN, make_speaker_store, run_cli, write_tone_data_dir

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import sha256_file
from pyspeaker.training.checkpoint import load_checkpoint

FEAT_ARGS = ("--conf", FBANK, "--cmn", "utterance")  # Kaldi fbank + utterance CMN, as a WeSpeaker model takes
SETS = ["train.max_epoch=1", "data.batch_size=8", "data.crop_frames=20", "model.nOut=16", "train.device=cpu",
        "augment.specaugment=false"]


@dataclass
class Source:
    root: Path
    exp: Path           # the tiny trained TDNN (speakers s0..s2)
    final: dict
    data2: Path         # other speakers (x0..x3)
    store2: Path        # their features, the source's feat_id


def _rename_speakers(d: Path, prefix: str) -> Path:
    u2s = [line.split() for line in (d / "utt2spk").read_text().splitlines()]
    (d / "utt2spk").write_text("".join(f"{u} {prefix}{s[1:]}\n" for u, s in u2s))
    s2u = [line.split(maxsplit=1) for line in (d / "spk2utt").read_text().splitlines()]
    (d / "spk2utt").write_text("".join(f"{prefix}{s[1:]} {us}\n" for s, us in s2u))
    return d


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    root = tmp_path_factory.mktemp("init_from")
    data = write_tone_data_dir(root / "data" / "train", root / "wav")
    store = Path(run_cli("make-features", "--data-dir", data, *FEAT_ARGS, "--features-root", root / "features",
                         check=True).stdout.strip())
    exp = root / "exp_src"
    run_cli("train", "--features", store, "--exp-dir", exp, *TINY_TDNN_TRAIN, check=True)
    data2 = _rename_speakers(write_tone_data_dir(root / "data" / "new", root / "wav_new", n_spk=4), "x")
    store2 = Path(run_cli("make-features", "--data-dir", data2, *FEAT_ARGS, "--features-root", root / "features",
                          check=True).stdout.strip())
    return Source(root, exp, load_checkpoint(exp / "checkpoints" / "final.pt"), data2, store2)


def _train(cfg_sets, exp, *, features=None, data_dir=None, init_from=None, config=REPO / "conf" / "tdnn_small.yaml",
           resume="no"):
    from pyspeaker.training.config import load_config
    from pyspeaker.training.trainer import train

    cfg = load_config(config, list(cfg_sets))
    return train(cfg, features, exp, progress=False, data_dir=data_dir, init_from=init_from, resume=resume)


def test_init_from_experiment_with_new_speakers(source, tmp_path):
    exp = tmp_path / "ft"
    proc = run_cli("train", "--features", source.store2, "--exp-dir", exp, "--init-from", source.exp,
                   *TINY_TDNN_TRAIN, check=True)
    assert proc.stdout.strip() == str(exp / "checkpoints" / "final.pt")
    init = load_checkpoint(exp / "checkpoints" / "init.pt")
    # the first step starts from the source's weights, every tensor bit for bit
    assert list(init["model"]) == list(source.final["model"])
    assert all(torch.equal(init["model"][k], v) for k, v in source.final["model"].items())
    final = load_checkpoint(exp / "checkpoints" / "final.pt")
    assert final["speakers"] == ["x0", "x1", "x2", "x3"]
    assert source.final["loss"]["fc.weight"].shape == (3, 16)
    assert final["loss"]["fc.weight"].shape == (4, 16)  # a new head for the 4 new speakers
    assert final["model_options"] == source.final["model_options"]
    assert final["feat_config"]["feat_id"] == source.final["feat_id"] == final["feat_id"]
    src_file = source.exp / "checkpoints" / "final.pt"
    assert final["init_from"]["path"] == str(src_file.resolve())
    assert final["init_from"]["sha256"] == sha256_file(src_file)
    assert not torch.equal(final["model"]["segment6.weight"], init["model"]["segment6.weight"])
    # resume: only with the same --init-from file
    with pytest.raises(ConfigError, match=f"that run started from --init-from {src_file.resolve()}: give it again"):
        _train(SETS, exp, features=source.store2, resume="yes")
    assert _train(SETS, exp, features=source.store2, resume="yes", init_from=src_file) == exp / "checkpoints" / "final.pt"
    log = (exp / "train.log").read_text()
    assert "is already trained to epoch 1" in log
    assert f"initialised from {src_file} (TDNN, epoch 1, 3 speakers; front-end {source.final['feat_id']}): " \
           f"{len(init['model'])} tensors loaded strictly; new softmax loss head for 4 speakers" in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_freeze_early_layers_from_audio_under_ddp(source, tmp_path, monkeypatch):
    import pyspeaker

    # one torchrun-style process (gloo): the DDP wrapper trains with frozen parameters
    for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(k, v)
    exp = tmp_path / "frozen"
    # from audio, without data.feat_conf: the model's own fbank + utterance CMN are computed on the fly
    run_cli("train", "--data-dir", source.data2, "--exp-dir", exp, "--init-from", source.exp / "checkpoints",
            *TINY_TDNN_TRAIN, "--set", "train.freeze=[tdnn1, tdnn2]", "--set", "train.max_epoch=2", check=True)
    src, final = source.final["model"], load_checkpoint(exp / "checkpoints" / "final.pt")
    frozen = [k for k in src if k.startswith(("tdnn1.", "tdnn2."))]
    assert len(frozen) == 2 * 7  # conv weight, bias; bn weight, bias, running mean, var, count
    for k in frozen:  # weights and BatchNorm statistics of the frozen layers: bit-identical
        assert torch.equal(final["model"][k], src[k]), k
    for k in ("tdnn3.conv.weight", "tdnn5.bn.weight", "segment6.weight", "tdnn3.bn.running_mean"):
        assert not torch.equal(final["model"][k], src[k]), k
    assert final["model"]["tdnn3.bn.num_batches_tracked"] > src["tdnn3.bn.num_batches_tracked"]
    assert final["feat_id"] == source.final["feat_id"] and final["world_size"] == 1
    n_frozen = sum(v.numel() for k, v in src.items() if k in frozen and v.is_floating_point() and "running" not in k)
    n_all = sum(v.numel() for k, v in src.items() if v.is_floating_point() and "running" not in k)
    log = (exp / "train.log").read_text()
    assert (f"train.freeze tdnn1, tdnn2: {n_frozen} parameters frozen (6 modules kept in eval mode), "
            f"{n_all - n_frozen} trainable (+ {4 * 16 + 4} of the loss)") in log
    assert "all 1 processes end with identical weights" in log
    assert f"features {source.final['feat_id']} computed on the fly" in log
    model = pyspeaker.load_model(exp, device="cpu")
    assert model.feature_config.feat_id() == source.final["feat_id"]
    assert model.embed(source.root / "wav_new" / "s1-u0.wav").shape == (16,)


def test_init_from_resemblyzer_model_dir(tmp_path):
    pytest.importorskip("resemblyzer")
    import pyspeaker

    model_dir = tmp_path / "resemblyzer"
    run_cli("import-model", "--from", "resemblyzer", "--out", model_dir, check=True)
    data = write_tone_data_dir(tmp_path / "data", tmp_path / "wav", n_spk=3, n_utt=2)
    exp = tmp_path / "ft"
    run_cli("train", "--data-dir", data, "--exp-dir", exp, "--init-from", model_dir, "--threads", "1",
            *[a for kv in ("train.max_epoch=1", "data.batch_size=3", "data.crop_frames=20", "loss.name=softmax",
                           "train.device=cpu", "train.freeze=[lstm]") for a in ("--set", kv)], check=True)
    src, final = load_checkpoint(model_dir / "final.pt"), load_checkpoint(exp / "checkpoints" / "final.pt")
    assert final["model_options"] == src["model_options"] and final["feat_config"] == {"waveform": True}
    assert final["inference"] == src["inference"] and final["loss"]["fc.weight"].shape == (3, 256)
    assert final["init_from"]["imported_from"] == "resemblyzer"
    assert all(torch.equal(final["model"][k], v) for k, v in src["model"].items() if k.startswith("lstm."))
    assert not torch.equal(final["model"]["linear.weight"], src["model"]["linear.weight"])
    e = pyspeaker.load_model(exp, device="cpu").embed(tmp_path / "wav" / "s2-u1.wav")
    assert e.shape == (256,) and np.isfinite(e).all()


def test_bad_input(source, tmp_path):
    from pyspeaker.features import load_feature_config

    # a file that is not a model: one line naming it
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model\n")
    proc = run_cli("train", "--features", source.store2, "--exp-dir", tmp_path / "e0", "--init-from", junk,
                   *TINY_TDNN_TRAIN)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [(f"error: {junk}: --init-from: not a pyspeaker model (cannot read it "
                                                 "as a checkpoint; models of other toolkits are made pyspeaker models "
                                                 "by 'pyspeaker import-model')")]
    with pytest.raises(DataError, match="--init-from: model not found"):
        _train(SETS, tmp_path / "e1", features=source.store2, init_from=tmp_path / "nothing.pt")
    # a freeze prefix that matches nothing lists the names there are; freezing everything is refused
    with pytest.raises(ConfigError) as e:
        _train(SETS + ["train.freeze=[tdnn1, layer1]"], tmp_path / "e2", features=source.store2, init_from=source.exp)
    assert e.value.message.startswith("train.freeze: 'layer1' matches no parameter of the network; its parameter "
                                      "names start with: tdnn1, tdnn2, tdnn3, tdnn4, tdnn5, segment6 ")
    with pytest.raises(ConfigError, match="freezes every parameter of the network"):
        _train(SETS + ["train.freeze=[tdnn1, tdnn2, tdnn3, tdnn4, tdnn5, segment6]"], tmp_path / "e3",
               features=source.store2)
    # a config naming another network, or other settings of it
    with pytest.raises(ConfigError, match=r"the config's model is ECAPA-TDNN but --init-from .*final\.pt holds a "
                                          r"TDNN model"):
        _train(SETS + ["model.name=ECAPA-TDNN"], tmp_path / "e4", features=source.store2, init_from=source.exp)
    with pytest.raises(ConfigError, match="model.nOut is 32 in the config but 16 in the --init-from model"):
        _train(SETS + ["model.nOut=32"], tmp_path / "e5", features=source.store2, init_from=source.exp)
    # a features model and a store of other features: both ids, and how to make matching ones
    other = make_speaker_store(tmp_path / "other_store", dim=24)
    exp = tmp_path / "e6"
    with pytest.raises(ConfigError) as e:
        _train(SETS, exp, features=other, init_from=source.exp)
    want = source.final["feat_id"]
    conf = exp / "fbank_init.conf"
    assert e.value.message.startswith(f"the feature store {other} holds features test_0000 but the --init-from model "
                                      f"{source.exp / 'checkpoints' / 'final.pt'} takes {want}; make matching "
                                      f"features with 'pyspeaker make-features --data-dir DATA_DIR --conf {conf} "
                                      f"--cmn utterance' (the model's settings, written to {conf})")
    assert load_feature_config(conf, cmn="utterance").feat_id() == want  # the advice makes the model's features
    # from audio with data.feat_conf of other features
    with pytest.raises(ConfigError, match="data.feat_conf .* gives features mfcc_"):
        _train(SETS + [f"data.feat_conf={REPO / 'conf' / 'mfcc.conf'}"], tmp_path / "e7", data_dir=source.data2,
               init_from=source.exp)
