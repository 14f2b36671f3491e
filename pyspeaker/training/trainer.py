"""The training loop: batches of speakers -> embedding network -> loss, one checkpoint per epoch.

Outputs in the experiment directory (written by the first process only in a distributed run):
  config.yaml                merged configuration (what actually ran)
  train.log                  timestamped log
  metrics.tsv                one row per epoch: epoch, loss, accuracy, lr, seconds
                             (+ valid_eer, valid_min_dcf when a validation trial list is set)
  checkpoints/init.pt        the model before the first step: randomly initialised (the "untrained"
                             baseline), or the weights of ``init_from``
  checkpoints/epoch_NNNN.pt  after each epoch (the last ``train.keep_last`` when set)
  checkpoints/best.pt        the epoch with the lowest validation EER (with validation)
  checkpoints/final.pt       the model ``train.select`` picks when training ends: ``last`` (the last
                             epoch), ``best`` (the epoch of lowest validation EER in metrics.tsv; ties:
                             the later) or ``average`` (the mean of the last ``train.average_last``
                             epoch checkpoints, checkpoint.average_checkpoints); it records ``select``
                             and ``selected_from`` (its epochs). Selection reads validation results only.

Time budget (``train.max_minutes`` M > 0): the budget counts training time from the first step
(steps, validation, checkpoints; not the setup before). It is checked before every step: the first
step past the budget is not taken, the epoch is closed as a partial one (validated, metrics row,
checkpoint with ``partial`` and ``steps``) and final.pt written, so a run ends within one step (plus
that epoch's validation and checkpoint) of M minutes. ``train.max_epoch`` is then an upper bound and
the schedules follow whichever ends training first, the budget or the epochs
(:mod:`pyspeaker.training.schedule`). Under DDP the first process's clock
decides for all. Checkpoints hold the training time so far (``train_seconds``): a resumed budgeted
run continues the clock where its checkpoint left it (the time between the checkpoint and the stop
is not counted), and one whose budget is spent only writes final.pt. A resumed partial epoch is
not repeated: training continues with the next epoch.

A run resumes from its latest epoch checkpoint (``resume="yes"``, or ``"auto"``: when there is
one made with the same settings) and then continues exactly as if it had not stopped: model,
loss, optimiser, lr schedule and gradient scaler come from the checkpoint, and the batches,
crops, augmentation and random draws of every epoch are functions of (seed, epoch, process).

``init_from`` (``train --init-from``) starts from a trained or imported model and ``train.freeze``
keeps part of it fixed: rules in :mod:`pyspeaker.training.finetune`.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from pyspeaker import __version__
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import write_text_atomic
from pyspeaker.log import DATEFMT, FORMAT, get_logger
from pyspeaker.losses import build_loss
from pyspeaker.models import build_model, count_parameters
from pyspeaker.training import distributed
from pyspeaker.training.checkpoint import (epoch_checkpoints, load_checkpoint, prune_checkpoints,
                                           save_checkpoint)
from pyspeaker.training.config import dump_config, resume_mismatch
from pyspeaker.training.step import SpeakerNet, Stepper, make_optimizer, model_options, prepare_cpu

log = get_logger(__name__)

METRICS_HEADER = "epoch\tloss\taccuracy\tlr\tseconds\n"
VALID_COLUMNS = "\tvalid_eer\tvalid_min_dcf"
# after the others: how fast the epoch went and how much of it waited for the data loader
SPEED_COLUMNS = "\tcrops_per_s\tdata_wait_pct"
RESUME_MODES = ("no", "auto", "yes")


def _seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Random streams of one epoch of one process (mining, masks, worker seeds) start from here."""
    s = int(np.random.SeedSequence((seed, epoch, rank, 0x7EA1)).generate_state(1)[0])
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


class _RunLog:
    """train.log for this run (first process only), restored to the old logging state afterwards."""

    def __init__(self, exp_dir: Path, main: bool):
        self.pkg = logging.getLogger("pyspeaker")
        self.old_level = self.pkg.level
        self.handler = None
        if main:
            self.handler = logging.FileHandler(exp_dir / "train.log", mode="a")
            self.handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
            self.pkg.addHandler(self.handler)
            self.pkg.setLevel(logging.INFO)
        else:
            self.pkg.setLevel(logging.WARNING)  # the other processes only speak up about problems

    def close(self) -> None:
        if self.handler is not None:
            self.pkg.removeHandler(self.handler)
            self.handler.close()
        self.pkg.setLevel(self.old_level)


def _find_resume_point(ckpt_dir: Path, cfg: dict, mode: str, exp_dir: Path, src=None) -> dict | None:
    from pyspeaker.training.finetune import resume_problem

    if mode == "no":
        return None
    found = epoch_checkpoints(ckpt_dir)
    if not found:
        if mode == "yes":
            raise ConfigError(f"nothing to resume: no epoch checkpoints in {ckpt_dir}")
        return None
    epoch, path = found[-1]
    ckpt = load_checkpoint(path)
    problem = resume_problem(ckpt.get("init_from"), src) or resume_mismatch(ckpt.get("config", {}), cfg)
    if problem:
        if mode == "yes":
            raise ConfigError(f"cannot resume {exp_dir} from {path.name}: {problem}")
        log.warning("not resuming from %s: %s; training from the start", path, problem)
        return None
    ckpt["_path"] = path
    return ckpt


def train(cfg: dict, features: str | Path | None, exp_dir: str | Path, progress: bool | None = None, *,
          data_dir: str | Path | None = None, resume: str = "no", expected_classes: int | None = None,
          init_from: str | Path | None = None) -> Path:
    """Train as configured; returns the path of the final checkpoint.

    Training data: ``features`` (a feature store) or ``data_dir`` (audio). ``resume``: "no",
    "auto" or "yes" (see the module docstring). ``expected_classes`` (voxceleb_trainer's
    ``--nClasses``) is checked against the number of speakers in the data. ``init_from``: a
    checkpoint, experiment dir or import-model dir to start from (its network and front-end; the
    config's model section is replaced, see :mod:`pyspeaker.training.finetune`).
    """
    if resume not in RESUME_MODES:
        raise ConfigError(f"resume must be one of {', '.join(RESUME_MODES)}, got {resume!r}")
    t = cfg["train"]
    info, device = distributed.init(str(t["device"]))
    exp_dir = Path(exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    runlog = None
    try:
        # what only the first process does (here and below) runs under all_or_none: its failure
        # must stop every process, not leave the others waiting for it until the timeout
        with distributed.all_or_none(info):
            if info.is_main:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
            runlog = _RunLog(exp_dir, info.is_main)
        return _train(cfg, features, data_dir, exp_dir, ckpt_dir, progress, resume, expected_classes, info, device,
                      init_from)
    finally:
        if runlog is not None:
            runlog.close()
        distributed.shutdown(info)


@dataclass
class _Run:
    """Everything one training run is made of, built before its first epoch."""

    cfg: dict
    info: distributed.Dist
    device: torch.device
    exp_dir: Path
    ckpt_dir: Path
    data: object
    plan: object
    sampler: object
    model_opts: dict
    model: nn.Module
    loss_fn: nn.Module
    net: SpeakerNet
    opt: torch.optim.Optimizer
    schedule: object
    scaler: torch.amp.GradScaler
    mixed: bool
    channels_last: bool
    validator: object | None
    rows: list
    best_eer: float = float("inf")
    clock: object = None                # _Clock: training time and the budget
    start_epoch: int = 1
    init: object | None = None          # finetune.InitSource of --init-from
    keep_eval: list = None              # frozen modules kept in eval mode (train.freeze)
    trainable: list = None              # the parameters the optimiser updates

    @property
    def max_epoch(self) -> int:
        return int(self.cfg["train"]["max_epoch"])

    def base_state(self) -> dict:
        """What every checkpoint holds to rebuild the model."""
        d = self.data
        state = {"model_options": self.model_opts, "config": self.cfg, "speakers": d.speakers, "feat_id": d.feat_id,
                 "feat_config": d.feat_config, "loss_name": self.cfg["loss"]["name"], "pyspeaker_version": __version__}
        if self.init is not None:
            state["init_from"] = self.init.record()
            if "inference" in self.init.ckpt:  # how the model embeds (e.g. voxceleb_trainer's crop normalisation)
                state["inference"] = dict(self.init.ckpt["inference"] or {})
        return state

    def train_mode(self) -> None:
        """Training mode, except for the frozen modules (train.freeze), which stay in eval mode."""
        self.net.train()
        for m in self.keep_eval or ():
            m.eval()


def _train(cfg, features, data_dir, exp_dir: Path, ckpt_dir: Path, progress, resume, expected_classes,
           info, device, init_from=None) -> Path:
    from pyspeaker.training import finetune

    torch.manual_seed(int(cfg["train"]["seed"]))
    src, feature_cfg = None, None
    if init_from is not None:
        src = finetune.load_init_source(init_from)
        cfg = finetune.adopt_model_section(cfg, src)
        feature_cfg = finetune.front_end(cfg, src, features, data_dir, exp_dir, write=info.is_main)
    data = _load_data(cfg, features, data_dir, expected_classes, feature_cfg)
    run = _build_run(cfg, data, data_dir, info, device, exp_dir, ckpt_dir, src, feature_cfg)
    ckpt = _find_resume_point(ckpt_dir, cfg, resume, exp_dir, src)
    if ckpt is not None:
        _restore(run, ckpt)
    _log_setup(run)
    with distributed.all_or_none(info):
        if info.is_main:
            write_text_atomic(exp_dir / "config.yaml", dump_config(cfg))
            if ckpt is None:
                save_checkpoint(ckpt_dir / "init.pt", {**run.base_state(), "epoch": 0, "model": run.model.state_dict()})
    final = ckpt_dir / "final.pt"
    budget = run.clock.budget_s
    if run.start_epoch > run.max_epoch or run.clock.spent():
        log.info("%s is already trained to epoch %d (train.max_epoch %d%s)", exp_dir, run.start_epoch - 1,
                 run.max_epoch, f", time budget {budget / 60:g} min, {run.clock.offset / 60:.2f} min used"
                 if budget else "")
        state = {k: v for k, v in ckpt.items() if k != "_path"}
    else:
        state = _train_epochs(run, progress)
        distributed.check_identical(info, run.net)
    with distributed.all_or_none(info):
        if info.is_main:
            _write_final(run, state, final)
    distributed.barrier(info)
    return final


def _train_epochs(run: _Run, progress) -> dict:
    """The epochs up to train.max_epoch or the time budget; returns the last epoch's state."""
    stepper, state, budget = None, None, run.clock.budget_s
    run.clock.start()
    why = f"reached train.max_epoch {run.max_epoch}"
    for epoch in range(run.start_epoch, run.max_epoch + 1):
        if state is not None and run.clock.spent():  # spent on the last epoch's validation and checkpoint
            why = f"time budget of {budget / 60:g} min spent after epoch {epoch - 1}"
            _record_spent(run, state)
            break
        stepper = stepper or _make_stepper(run)
        new = _train_epoch(run, stepper, epoch, progress)
        if new is None:
            why = f"time budget of {budget / 60:g} min spent after epoch {epoch - 1}"
            if state is not None:
                _record_spent(run, state)
            break
        state = new
        if state.get("stopped"):
            why = state["stopped"]
            break
    used = run.clock.elapsed()
    if budget and used < budget:
        log.info("training stopped: %s after %.2f min, %.0f %% of the time budget of %g min: the schedules ended "
                 "with the epochs (raise train.max_epoch to train longer)", why, used / 60, 100 * used / budget,
                 budget / 60)
    else:
        log.info("training stopped: %s; %.2f min (%.1f s) of training", why, used / 60, used)
    return state


def _record_spent(run: _Run, state: dict) -> None:
    """The budget ran out after ``state``'s epoch was saved (on its closing): its checkpoint gets the
    clock as it is now, so that a resumed run knows the budget is spent and trains nothing more."""
    state["train_seconds"] = max(float(state.get("train_seconds", 0.0)), run.clock.elapsed())
    with distributed.all_or_none(run.info):
        if run.info.is_main:
            save_checkpoint(run.ckpt_dir / f"epoch_{int(state['epoch']):04d}.pt", state)


def _load_data(cfg: dict, features, data_dir, expected_classes, feature_cfg=None):
    from pyspeaker.training.data import load_train_data

    data = load_train_data(cfg, features, data_dir, feature_cfg)
    num_classes = len(data.speakers)
    if num_classes < 2:
        raise DataError(f"training needs at least 2 speakers, the data have {num_classes}", path=data.source)
    if expected_classes is not None and int(expected_classes) != num_classes:
        raise ConfigError(f"--nClasses {expected_classes} does not match the training data: {data.source} has "
                          f"{num_classes} speakers (the number comes from the data; leave --nClasses out)")
    return data


def _build_run(cfg: dict, data, data_dir, info, device, exp_dir: Path, ckpt_dir: Path, src=None,
               feature_cfg=None) -> _Run:
    """Batches, network (with the weights of ``src``, finetune.InitSource, and train.freeze applied),
    loss, optimiser, schedule and validator of a run."""
    from pyspeaker.losses import loss_class
    from pyspeaker.training import finetune
    from pyspeaker.training.sampler import SpeakerBatchSampler, plan_batches
    from pyspeaker.training.schedule import Schedule

    t, d, a = cfg["train"], cfg["data"], cfg["augment"]
    seed, max_epoch, n_per = int(t["seed"]), int(t["max_epoch"]), int(d["nPerSpeaker"])
    cls = loss_class(cfg["loss"]["name"])
    plan = plan_batches(data.labels, int(d["batch_size"]), n_per, unique_speakers=bool(d["unique_speakers"]),
                        loss_name=cfg["loss"]["name"], classification=cls.utts_per_speaker == 1,
                        max_seg_per_spk=int(d["max_seg_per_spk"]), world_size=info.world_size, seed=seed,
                        where=None, epochs=max_epoch)
    sampler = SpeakerBatchSampler(data.labels, plan.batch_size, n_per, int(d["max_seg_per_spk"]), seed, info.rank,
                                  info.world_size, bool(d["unique_speakers"]))
    mopts = model_options(cfg, data.feat_dim)
    if src is not None:  # the checkpoint's network as it was (its weights load strictly)
        mopts = src.model_options
        if data.feat_dim is not None and mopts.get("n_mels") not in (None, data.feat_dim):
            raise ConfigError(f"the training features have dimension {data.feat_dim} but the --init-from model "
                              f"{src.path} takes n_mels {mopts['n_mels']}")
    model = build_model(**mopts)
    if src is not None:
        finetune.load_weights(model, src)
    keep_eval = finetune.freeze(model, list(t["freeze"]))
    # a new loss head for the speakers of these data, on the network's embedding size
    loss_fn = build_loss(nOut=int(mopts["nOut"]), num_classes=len(data.speakers), **cfg["loss"])
    mixed = bool(t["mixedprec"])
    if mixed and device.type != "cuda":
        log.warning("train.mixedprec applies to CUDA only; training on %s in float32", device)
        mixed = False
    model.to(device)
    loss_fn.to(device)
    channels_last = prepare_cpu(cfg, model) if device.type == "cpu" else False
    spec = None
    if a["specaugment"]:
        from pyspeaker.models.frontend import WaveformModel

        if mopts.get("waveform") and not isinstance(model, WaveformModel):
            raise ConfigError(f"augment.specaugment: model {mopts['name']} computes its own features inside the "
                              "network, where SpecAugment cannot reach them; set --set augment.specaugment=false")
        spec = {k: int(a[k]) for k in ("freq_masks", "freq_width", "time_masks", "time_width")}
        if data.masks_in_loader:  # drawn per crop by the data, applied on the device by data.on_device
            spec = None
    validator = _make_validator(cfg, data_dir, feature_cfg)
    header = (METRICS_HEADER.rstrip("\n") + ("" if validator is None else VALID_COLUMNS) + SPEED_COLUMNS + "\n")
    trainable = [p for p in model.parameters() if p.requires_grad] + list(loss_fn.parameters())
    return _Run(cfg, info, device, exp_dir, ckpt_dir, data, plan, sampler, mopts, model, loss_fn,
                SpeakerNet(model, loss_fn, spec), make_optimizer(cfg, trainable),
                Schedule(cfg["optim"], max_epoch, budget_s=_budget_s(cfg)), torch.amp.GradScaler("cuda", enabled=mixed), mixed, channels_last,
                validator, [header], clock=_Clock(info, _budget_s(cfg)), init=src, keep_eval=keep_eval,
                trainable=trainable)


def _budget_s(cfg: dict) -> float:
    return 60.0 * float(cfg["train"]["max_minutes"])


class _Clock:
    """Training time in seconds (from the first step, plus that of the checkpoint resumed), the
    first process's reading on every process, and the budget (0 = none)."""

    def __init__(self, info, budget_s: float):
        self.info, self.budget_s, self.offset, self.t0 = info, float(budget_s), 0.0, None
        self.steps = 0  # taken in this invocation

    def start(self) -> None:
        self.t0 = time.time()

    def elapsed(self) -> float:
        t = self.offset + (0.0 if self.t0 is None else time.time() - self.t0)
        if self.info.enabled:  # one clock for all, so that every process stops at the same step, same lr
            t = float(distributed.all_reduce_sum(self.info, torch.tensor([t if self.info.is_main else 0.0],
                                                                         dtype=torch.float64))[0])
        return t

    def spent(self) -> bool:
        return self.budget_s > 0 and self.elapsed() >= self.budget_s


def _make_validator(cfg: dict, data_dir, feature_cfg=None):
    from pyspeaker.training.data import feature_config_from

    interval = int(cfg["train"]["test_interval"])
    if interval <= 0:
        return None
    if not cfg["valid"]["trials"]:
        log.warning("train.test_interval is %d but there is no validation trial list (valid.trials): no validation",
                    interval)
        return None
    from pyspeaker.training.validation import Validator

    fcfg = feature_cfg
    if fcfg is None and data_dir is not None and cfg["data"]["feat_conf"] and not cfg["model"].get("waveform"):
        fcfg = feature_config_from(cfg)
    return Validator(cfg, training_from_audio=data_dir is not None, feature_cfg=fcfg)


def _restore(run: _Run, ckpt: dict) -> None:
    """Continue from an epoch checkpoint: model, loss, optimiser, schedule, scaler and metrics rows."""
    run.model.load_state_dict(ckpt["model"])
    run.loss_fn.load_state_dict(ckpt["loss"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.schedule.load_state_dict(ckpt.get("scheduler", {}))
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    run.rows += [_fit_row(r, run.validator is not None) for r in ckpt.get("metrics", [])[1:]]
    run.best_eer = float(ckpt.get("best_valid_eer", float("inf")))
    run.clock.offset = float(ckpt.get("train_seconds", 0.0))
    run.start_epoch = int(ckpt["epoch"]) + 1
    log.info("resuming %s from %s (epoch %d of %d)", run.exp_dir, ckpt["_path"], run.start_epoch - 1, run.max_epoch)


def _log_setup(run: _Run) -> None:
    d, data, info = run.cfg["data"], run.data, run.info
    log.info("Model %s has %d parameters (loss %s: %d more); %d speakers, %d utterances, %s, device %s",
             run.model_opts["name"], count_parameters(run.model), run.cfg["loss"]["name"],
             count_parameters(run.loss_fn), len(data.speakers), len(data.dataset),
             f"feature dim {data.feat_dim}" if data.feat_dim else "waveform input", run.device)
    if run.init is not None:
        log.info("initialised from %s: %d tensors loaded strictly; new %s loss head for %d speakers",
                 run.init.describe(), len(run.init.ckpt["model"]), run.cfg["loss"]["name"], len(data.speakers))
    if run.cfg["train"]["freeze"]:
        from pyspeaker.training.finetune import count

        trainable, frozen = count(run.model)
        log.info("train.freeze %s: %d parameters frozen (%d modules kept in eval mode), %d trainable (+ %d of the "
                 "loss)", ", ".join(run.cfg["train"]["freeze"]), frozen, len(run.keep_eval), trainable,
                 count_parameters(run.loss_fn))
    log.info("training data: %s", data.description)
    log.info("batches: %d speakers x %d utterances of %d frames per step%s; %d steps per epoch%s%s",
             run.plan.batch_size, int(d["nPerSpeaker"]), int(d["crop_frames"]),
             f" per process, {info.world_size} processes" if info.enabled else "", run.plan.batches_per_epoch,
             "; mixed precision" if run.mixed else "", "; channels_last" if run.channels_last else "")
    if run.validator is not None:
        log.info("validation every %d epochs on %s", int(run.cfg["train"]["test_interval"]), run.validator.describe())
    t, o = run.cfg["train"], run.cfg["optim"]
    if run.clock.budget_s:
        budget, max_epoch = run.clock.budget_s, run.max_epoch
        rules = [f"{o['scheduler']} lr schedule"]
        if float(o["warmup_epochs"]):
            rules.append(f"lr warm-up over at most {float(o['warmup_epochs']) * budget / max_epoch / 60:.3g} min")
        if float(o["margin_warmup_epochs"]):
            rules.append(f"margin warm-up over at most {float(o['margin_warmup_epochs']) * budget / max_epoch / 60:.3g} min")
        log.info("time budget %g min (train.max_minutes): training stops at the first step past it (that epoch "
                 "closed as a partial one), at most %d epochs (train.max_epoch); the %s follow whichever "
                 "ends training first: schedule epoch = the epochs done, or %d x elapsed / budget (one per %.3g "
                 "min) when further", budget / 60, max_epoch, ", ".join(rules), max_epoch, budget / max_epoch / 60)
    if t["select"] == "best":
        log.info("final.pt will be the epoch of lowest validation EER (train.select=best)")
    elif t["select"] == "average":
        log.info("final.pt will be the average of the last %d epoch checkpoints (train.select=average)",
                 int(t["average_last"]))


def _make_stepper(run: _Run) -> Stepper:
    train_net: nn.Module = run.net
    if run.info.enabled:
        train_net = nn.parallel.DistributedDataParallel(
            run.net, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    return Stepper(train_net, run.loss_fn, run.opt, run.scaler, run.schedule,
                    list(run.trainable), float(run.cfg["train"]["grad_clip"]),
                    run.mixed, run.device, int(run.cfg["data"]["nPerSpeaker"]), run.info.is_main)


def _train_epoch(run: _Run, stepper: Stepper, epoch: int, progress) -> dict | None:
    """One epoch: its seeded batches, the steps, validation when due, metrics row and checkpoint
    (None when the time budget left no step for it)."""
    t, info, d = run.cfg["train"], run.info, run.cfg["data"]
    t0 = time.time()
    _seed_everything(int(t["seed"]), epoch, info.rank)
    run.train_mode()
    run.data.dataset.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    batches = run.sampler.batches(epoch)
    if not batches:
        raise DataError(f"epoch {epoch} has no batch of {run.plan.batch_size} speakers", path=run.data.source)
    loader = _WaitTimer(torch.utils.data.DataLoader(run.data.dataset, sampler=batches, batch_size=None,
                                                    num_workers=int(d["num_workers"]),
                                                    pin_memory=run.device.type == "cuda"))
    timer = loader
    loader = run.data.on_device(loader, run.device)  # audio: augmentation and features batched on the device
    budget, stop = run.clock.budget_s, {}
    steps = _until_budget(loader, run, len(batches), stop) if budget else loader
    bar = _progress_bar(steps, epoch, run.max_epoch, progress if info.is_main else False, total=len(batches))
    sums, lr = stepper.run_epoch(bar, epoch, len(batches))
    done = stop.get("steps", len(batches))
    if done == 0:  # the budget ran out between epochs: the last one stands
        return None
    stopped = None
    if done < len(batches):
        stopped = (f"time budget of {budget / 60:g} min reached in epoch {epoch} after {done} of {len(batches)} "
                   f"steps (closed as a partial epoch)")
    elif budget and epoch < run.max_epoch and run.clock.spent():
        stopped = f"time budget of {budget / 60:g} min reached at the end of epoch {epoch}"
    distributed.check_disjoint_shards(info, batches, epoch)
    distributed.all_reduce_sum(info, sums)
    distributed.average_buffers(info, run.model)
    tot_loss, tot_acc, seen = float(sums[0] / sums[2]), float(sums[1] / sums[2]), int(sums[2])
    secs = time.time() - t0
    crops_per_s, wait_pct = seen / max(secs, 1e-9), 100.0 * timer.wait / max(secs, 1e-9)
    valid = _validate(run, epoch, last=stopped is not None)
    row = f"{epoch}\t{tot_loss:.4f}\t{tot_acc:.2f}\t{lr:.6g}\t{secs:.1f}"
    if run.validator is not None:
        row += "\tnan\tnan" if valid is None else f"\t{valid['eer']:.4f}\t{valid['min_dcf']:.4f}"
    run.rows.append(row + f"\t{crops_per_s:.1f}\t{wait_pct:.1f}\n")
    gpu_mem = ""
    if run.device.type == "cuda":
        gpu_mem = f", peak GPU memory {torch.cuda.max_memory_allocated(run.device) / 2**20:.0f} MiB"
        try:  # needs the NVIDIA management library (pynvml); without it the figure is left out
            gpu_mem += f", GPU utilisation {torch.cuda.utilization(run.device)} %"
        except Exception:  # noqa: BLE001
            pass
    log.info("epoch %d/%d%s: loss %.4f, accuracy %.2f %%, lr %.3g, %.1f s (%.0f crops/s, data wait %.1f %%%s)%s",
             epoch, run.max_epoch, f" (partial, {done} of {len(batches)} steps)" if done < len(batches) else "",
             tot_loss, tot_acc, lr, secs, crops_per_s, wait_pct, gpu_mem,
             "" if valid is None else f"; validation EER {valid['eer']:.2f} %, minDCF {valid['min_dcf']:.4f} "
                                      f"(p_target {valid['p_target']:g})")
    if valid is not None and valid["eer"] < run.best_eer:
        run.best_eer = valid["eer"]
    state = {**run.base_state(), "epoch": epoch, "model": run.model.state_dict(), "loss": run.loss_fn.state_dict(),
             "optimizer": run.opt.state_dict(), "scheduler": run.schedule.state_dict(),
             "scaler": run.scaler.state_dict(), "metrics": list(run.rows), "best_valid_eer": run.best_eer,
             "valid": valid, "world_size": info.world_size, "train_seconds": run.clock.elapsed(),
             "steps": done, "partial": done < len(batches)}
    _save_epoch(run, epoch, state, valid)
    if stopped:
        state["stopped"] = stopped
    return state


class _WaitTimer:
    """A loader whose iteration sums the seconds the training loop waited for its next batch
    (``wait``): the data-wait share of an epoch, which says whether training waits for data."""

    def __init__(self, loader):
        self.loader, self.wait = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            yield batch


def _until_budget(loader, run: _Run, n_steps: int, stop: dict):
    """The batches of ``loader`` while the budget lasts; sets the schedule's clock before each step
    and ``stop["steps"]`` when it stops early."""
    it = iter(loader)
    try:
        for step in range(n_steps):
            t = run.clock.elapsed()
            if t >= run.clock.budget_s and run.clock.steps:  # a run takes one step at least
                stop["steps"] = step
                return
            run.schedule.elapsed_s = t
            try:
                batch = next(it)
            except StopIteration:
                stop["steps"] = step
                return
            run.clock.steps += 1
            yield batch
    finally:
        del it


def _validate(run: _Run, epoch: int, last: bool = False) -> dict | None:
    """Validation results when this epoch is due (every test_interval epochs and the last one, on
    the first process only), else None."""
    interval = int(run.cfg["train"]["test_interval"])
    if run.validator is None or not (epoch % interval == 0 or epoch == run.max_epoch or last):
        return None
    valid = None
    with distributed.all_or_none(run.info):  # validation runs on the first process only
        if run.info.is_main:
            valid = run.validator(run.model, run.device)
    return valid


def _save_epoch(run: _Run, epoch: int, state: dict, valid: dict | None) -> None:
    with distributed.all_or_none(run.info):
        if run.info.is_main:
            write_text_atomic(run.exp_dir / "metrics.tsv", "".join(run.rows))
            save_checkpoint(run.ckpt_dir / f"epoch_{epoch:04d}.pt", state)
            if valid is not None and valid["eer"] <= run.best_eer:
                save_checkpoint(run.ckpt_dir / "best.pt", state)
                log.info("best validation EER so far: epoch %d -> %s", epoch, run.ckpt_dir / "best.pt")
            t = run.cfg["train"]
            keep_last = int(t["keep_last"])
            if t["select"] == "average" and keep_last:
                keep_last = max(keep_last, int(t["average_last"]))  # the epochs to average stay
            best = _best_epoch(run.rows) if t["select"] == "best" else None
            prune_checkpoints(run.ckpt_dir, keep_last, () if best is None else (best[0],))


def _best_epoch(rows: list) -> tuple[int, float] | None:
    """(epoch, EER) of the lowest validation EER in the metrics rows (ties: the later), or None."""
    best = None
    for row in rows[1:]:
        cells = row.rstrip("\n").split("\t")
        if len(cells) < 6:
            continue
        eer = float(cells[5])
        if np.isfinite(eer) and (best is None or eer <= best[1]):
            best = (int(cells[0]), eer)
    return best


def _write_final(run: _Run, state: dict, final: Path) -> None:
    """final.pt as train.select says, from the last epoch's ``state`` and the epoch checkpoints."""
    from pyspeaker.training.checkpoint import average_checkpoints

    t = run.cfg["train"]
    rule, last = t["select"], int(state["epoch"])
    state = {k: v for k, v in state.items() if k != "stopped"}
    if rule == "best":
        best = _best_epoch(run.rows)
        if best is None:
            log.warning("train.select=best but no epoch was validated: final.pt is the last epoch, %d", last)
        elif best[0] != last:
            path = run.ckpt_dir / f"epoch_{best[0]:04d}.pt"
            if not path.is_file():
                path = run.ckpt_dir / "best.pt"
            state = load_checkpoint(path)
            if int(state.get("epoch", -1)) != best[0]:
                raise DataError(f"train.select=best: epoch {best[0]} has the lowest validation EER in metrics.tsv "
                                f"but its checkpoint is gone (this holds epoch {state.get('epoch')})", path=path)
        if best is not None:
            save_checkpoint(final, {**state, "select": rule, "selected_from": [best[0]]})
            log.info("wrote %s: epoch %d, the lowest validation EER (%.2f %%) of the run (train.select=best)",
                     final, best[0], best[1])
            return
    if rule == "average":
        n = int(t["average_last"])
        chosen = [(e, p) for e, p in epoch_checkpoints(run.ckpt_dir) if last - n < e <= last]
        if len(chosen) < n:
            log.warning("train.average_last is %d but there are %d epoch checkpoints to average (epochs %s)", n,
                        len(chosen), ", ".join(str(e) for e, _ in chosen))
        average_checkpoints([p for _, p in chosen], final, extra={"select": rule})
        log.info("wrote %s: the average of epochs %s (train.select=average, train.average_last %d)", final,
                 ", ".join(str(e) for e, _ in chosen), n)
        return
    save_checkpoint(final, {**state, "select": "last", "selected_from": [last]})
    log.info("wrote %s: epoch %d, the last one (train.select=%s)", final, last, rule)


def _fit_row(row: str, with_valid: bool) -> str:
    """A metrics row of an earlier run with the validation columns added or removed as now."""
    cells = row.rstrip("\n").split("\t")[:5]
    if with_valid:
        old = row.rstrip("\n").split("\t")[5:7]
        cells += old if len(old) == 2 else ["nan", "nan"]
    return "\t".join(cells) + "\n"


def _progress_bar(loader, epoch: int, max_epoch: int, progress: bool | None, total: int | None = None):
    from tqdm import tqdm

    return tqdm(loader, total=total, desc=f"epoch {epoch}/{max_epoch}", unit="batch", disable=True if progress is False else None,
                leave=False, dynamic_ncols=True)
