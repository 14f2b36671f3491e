"""Training to a time budget (train.max_minutes), model selection (train.select: last, best,
average) and large-margin fine-tuning (conf/lm_finetune.yaml)."""
from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, run_cli

from pyspeaker.errors import ConfigError
from pyspeaker.training.checkpoint import load_checkpoint, model_from_checkpoint
from pyspeaker.training.config import load_config
from pyspeaker.training.schedule import Schedule
from pyspeaker.training.trainer import train

# a tiny TDNN on the 20-dim speaker store: steps of a few milliseconds
TINY = ["model.name=TDNN", "model.hidden=32", "model.stats_dim=48", "model.nOut=16", "model.encoder_type=STATS",
        "loss.name=softmax", "data.batch_size=2", "data.crop_frames=20", "optim.lr=0.005", "train.device=cpu"]


def _metrics(exp: Path) -> list[list[str]]:
    return [line.split("\t") for line in (exp / "metrics.tsv").read_text().splitlines()]


def _store_trials(store: Path) -> Path:
    utts = [line.split() for line in (store / "utt2spk").read_text().splitlines()]
    lines = [f"{a} {b} {'target' if sa == sb else 'nontarget'}\n"
             for i, (a, sa) in enumerate(utts) for b, sb in utts[i + 1:] if int(a[-2:]) % 3 == 0]
    (store / "trials").write_text("".join(lines))
    return store / "trials"


def test_schedules_run_over_the_budget():
    o = load_config(None, ["optim.scheduler=cosine", "optim.lr=0.1", "optim.min_lr=0.001", "optim.warmup_epochs=2",
                           "optim.margin_warmup_epochs=4", "loss.name=aamsoftmax"])["optim"]
    s = Schedule(o, max_epoch=10, budget_s=100.0)
    s.elapsed_s = 10.0      # 10 % of the budget = schedule epoch 1: half-way up the warm-up, ahead of the epochs
    assert s.schedule_progress(0.5) == pytest.approx(1.0)
    assert s.margin(0.2, s.schedule_progress(0.5)) == pytest.approx(0.05)
    # epochs ahead of the clock (max_epoch epochs take less than the budget): the epochs lead
    assert s.schedule_progress(7.0) == pytest.approx(7.0)
    assert s.lr(s.schedule_progress(10.0), 10) == pytest.approx(0.001)
    s.elapsed_s = 50.0
    assert s.lr(s.schedule_progress(0.0), 10) == pytest.approx(0.001 + 0.099 * 0.5)
    s.elapsed_s = 250.0     # past the budget: the end of the schedule
    assert s.lr(s.schedule_progress(0.0), 10) == pytest.approx(0.001)


def test_time_budget_stops_within_a_step_and_ends_the_cosine(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["train.max_epoch=100000", "train.max_minutes=0.15", "optim.scheduler=cosine"])
    t0 = time.time()
    final = train(cfg, speaker_store, exp, progress=False)
    wall = time.time() - t0
    ckpt = load_checkpoint(final)
    assert final == exp / "checkpoints" / "final.pt" and ckpt["select"] == "last"
    rows = _metrics(exp)[1:]
    assert ckpt["selected_from"] == [int(rows[-1][0])] == [ckpt["epoch"]]
    assert 1 < len(rows) < 100000
    # 9 s of training, stopped at the first step past it (steps take milliseconds; the last epoch's
    # closing, validation and checkpoint, adds a little)
    longest = max(float(r[4]) for r in rows)
    assert wall < 9.0 + 10
    log = (exp / "train.log").read_text()
    assert "time budget 0.15 min (train.max_minutes)" in log and "or 100000 x elapsed / budget (one per" in log
    m = re.search(r"training stopped: time budget of 0\.15 min (reached in epoch \d+ after \d+ of 12 steps "
                  r"\(closed as a partial epoch\)|reached at the end of epoch \d+|spent after epoch \d+); "
                  r"[\d.]+ min \(([\d.]+) s\) of training", log)
    assert m and 9.0 <= float(m.group(2)) < 9.0 + longest + 2.0
    # final.pt: the partial epoch stopped at the budget, or the last whole one when its own closing
    # (checkpoint) took the rest of the budget
    assert 9.0 - longest - 2.0 < ckpt["train_seconds"] <= float(m.group(2)) + 0.1
    # the lr follows the cosine over the 9 s: at the last step it is at the bottom (min_lr 0); 2 % of
    # the peak = the last 4.5 % of the budget (a loaded machine's epoch closing can take that long)
    assert float(rows[-1][3]) < 0.02 * 0.005
    lrs = [float(r[3]) for r in rows]   # the lr of each epoch's last step: down the cosine, on time
    assert all(a >= b for a, b in itertools.pairwise(lrs)) and lrs[0] > 0.01 * 0.005 > lrs[-1]
    model, _ = model_from_checkpoint(final)
    assert model(torch.randn(2, 30, 20)).shape == (2, 16)
    # resumed: the budget is spent, nothing more is trained
    before = len(rows)
    train(cfg, speaker_store, exp, progress=False, resume="yes")
    assert len(_metrics(exp)) - 1 == before
    assert "is already trained to epoch" in (exp / "train.log").read_text().split("resuming")[-1]


def test_a_budget_longer_than_the_epochs_still_ends_the_cosine(tmp_path, speaker_store):
    """3 epochs of milliseconds under a 10-minute budget: the lr anneals with the epochs, not the clock."""
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["train.max_epoch=3", "train.max_minutes=10", "optim.scheduler=cosine"])
    train(cfg, speaker_store, exp, progress=False)
    lrs = [float(r[3]) for r in _metrics(exp)[1:]]
    assert len(lrs) == 3 and lrs[-1] < 0.01 * 0.005 < lrs[0]   # the last step is at the cosine's bottom
    assert re.search(r"training stopped: reached train\.max_epoch 3 after [\d.]+ min, \d+ % of the time budget "
                     r"of 10 min: the schedules ended with the epochs", (exp / "train.log").read_text())


def test_select_best_needs_validation():
    with pytest.raises(ConfigError, match=r"train\.select=best picks the epoch of lowest validation EER: it needs "
                                          r"validation \(--set valid\.trials=TRIALS"):
        load_config(None, ["train.select=best"])
    with pytest.raises(ConfigError, match="train.select must be one of last, best, average, got 'median'"):
        load_config(None, ["train.select=median"])


def test_select_best_picks_the_lowest_validation_eer(tmp_path, speaker_store):
    trials = _store_trials(speaker_store)
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["train.max_epoch=4", "train.test_interval=1", "train.keep_last=1",
                                    "train.select=best", f"valid.trials={trials}", f"valid.features={speaker_store}",
                                    "optim.lr=0.02"])
    final = load_checkpoint(train(cfg, speaker_store, exp, progress=False))
    rows = _metrics(exp)
    assert rows[0][5] == "valid_eer"
    eers = [(float(r[5]), int(r[0])) for r in rows[1:]]
    best_eer = min(e for e, _ in eers)
    best_epoch = max(ep for e, ep in eers if e == best_eer)    # ties: the later
    assert final["select"] == "best" and final["selected_from"] == [best_epoch] == [final["epoch"]]
    assert final["valid"]["eer"] == pytest.approx(best_eer, abs=1e-3)
    ck = exp / "checkpoints"
    kept = load_checkpoint(ck / f"epoch_{best_epoch:04d}.pt")  # kept through keep_last=1
    assert all(torch.equal(kept["model"][k], v) for k, v in final["model"].items())
    assert (ck / "epoch_0004.pt").is_file() and len(list(ck.glob("epoch_*.pt"))) == (1 if best_epoch == 4 else 2)
    assert f"epoch {best_epoch}, the lowest validation EER ({best_eer:.2f} %" in (exp / "train.log").read_text()


def test_select_average_is_the_mean_of_the_last_epochs(tmp_path, speaker_store):
    exp = tmp_path / "exp"
    cfg = load_config(None, TINY + ["train.max_epoch=3", "train.keep_last=1", "train.select=average",
                                    "train.average_last=2"])
    final = load_checkpoint(train(cfg, speaker_store, exp, progress=False))
    ck = exp / "checkpoints"
    assert sorted(p.name for p in ck.glob("epoch_*.pt")) == ["epoch_0002.pt", "epoch_0003.pt"]  # keep_last raised
    a, b = load_checkpoint(ck / "epoch_0002.pt"), load_checkpoint(ck / "epoch_0003.pt")
    assert final["select"] == "average" and final["selected_from"] == [2, 3] and final["epoch"] == 3
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # a real mean
    for key, value in final["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a["model"][key] + b["model"][key]) / 2)
        else:
            assert torch.equal(value, b["model"][key])
    assert "final.pt: the average of epochs 2, 3 (train.select=average, train.average_last 2)" in \
        (exp / "train.log").read_text()


def test_large_margin_finetuning_config(tmp_path, speaker_store):
    src = tmp_path / "src"
    run_cli("train", "--features", speaker_store, "--exp-dir", src, "--threads", "1",
            *[a for kv in TINY + ["train.max_epoch=1"] for a in ("--set", kv)], check=True)
    lm = tmp_path / "lm"
    sets = ["data.crop_frames=30", "data.batch_size=2", "train.max_epoch=2", "train.device=cpu"]
    run_cli("train", "--init-from", src, "--config", REPO / "conf" / "lm_finetune.yaml", "--features", speaker_store,
            "--exp-dir", lm, "--threads", "1", *[a for kv in sets for a in ("--set", kv)], check=True)
    conf = yaml.safe_load((REPO / "conf" / "lm_finetune.yaml").read_text())
    assert "model" not in conf and conf["loss"]["margin"] == 0.5 and conf["data"]["crop_frames"] == 600
    assert conf["optim"]["lr"] * conf["optim"]["lr_decay"] ** conf["train"]["max_epoch"] == pytest.approx(2.5e-5, rel=0.01)
    final = load_checkpoint(lm / "checkpoints" / "final.pt")
    assert final["config"]["loss"] == {"name": "aamsoftmax", "margin": 0.5, "scale": 32}
    assert final["init_from"]["path"] == str((src / "checkpoints" / "final.pt").resolve())
    from pyspeaker.losses import build_loss

    head = build_loss(nOut=16, num_classes=4, **final["config"]["loss"])
    head.load_state_dict(final["loss"])
    assert head.margin == 0.5
    rows = _metrics(lm)
    assert len(rows) == 3 and float(rows[2][3]) < 1e-4   # low lr, decaying
