"""The training loop: batches of speakers -> embedding network -> loss, one checkpoint per epoch.

Outputs in the experiment directory (written by the first process only in a distributed run):
  config.yaml                merged configuration (what actually ran)
  train.log                  timestamped log
  metrics.tsv                one row per epoch: epoch, loss, accuracy, lr, seconds
                             (+ valid_eer, valid_min_dcf when a validation trial list is set)
  checkpoints/init.pt        the randomly initialised model (the "untrained" baseline)
  checkpoints/epoch_NNNN.pt  after each epoch (the last ``train.keep_last`` when set)
  checkpoints/best.pt        the epoch with the lowest validation EER (with validation)
  checkpoints/final.pt       after the last epoch

A run resumes from its latest epoch checkpoint (``resume="yes"``, or ``"auto"``: when there is
one made with the same settings) and then continues exactly as if it had not stopped: model,
loss, optimiser, lr schedule and gradient scaler come from the checkpoint, and the batches,
crops, augmentation and random draws of every epoch are functions of (seed, epoch, process).
"""
from __future__ import annotations

import logging
import random
import time
from contextlib import nullcontext
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

log = get_logger(__name__)

METRICS_HEADER = "epoch\tloss\taccuracy\tlr\tseconds\n"
VALID_COLUMNS = "\tvalid_eer\tvalid_min_dcf"
RESUME_MODES = ("no", "auto", "yes")


def model_options(cfg: dict, feat_dim: int | None) -> dict:
    """``build_model`` keywords: the config's model section, n_mels from the features when stored."""
    opts = {k: v for k, v in cfg["model"].items()}
    if feat_dim is not None:
        opts["n_mels"] = feat_dim  # from the features, never typed by the user
    for key in ("waveform", "log_input"):
        if key in opts and opts[key] is None:
            del opts[key]
    if not opts.get("waveform", False):
        opts.pop("waveform", None)
    return opts


def make_optimizer(cfg: dict, params) -> torch.optim.Optimizer:
    o = cfg["optim"]
    if o["name"] == "adam":
        return torch.optim.Adam(params, lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
    return torch.optim.SGD(params, lr=float(o["lr"]), momentum=float(o["momentum"]),
                           weight_decay=float(o["weight_decay"]), nesterov=False)


class SpeakerNet(nn.Module):
    """Embedding network + loss in one module (what DDP wraps): crops -> (loss, accuracy).

    ``inputs`` holds ``batch * n`` crops grouped by speaker ([spk A crop 1, spk A crop 2, spk B
    ...]); ``labels`` one label per speaker. SpecAugment, when set, is applied to the features
    between a waveform front-end and the network (or to the stored features). The loss runs in
    float32 even under mixed precision.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, spec_augment: dict | None = None):
        super().__init__()
        self.model = model
        self.loss = loss
        self.spec_augment = spec_augment

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        from pyspeaker.models.frontend import WaveformModel
        from pyspeaker.training.augment import spec_augment

        if not (self.training and self.spec_augment):
            return self.model(inputs)
        if isinstance(self.model, WaveformModel):
            return self.model.model(spec_augment(self.model.features(inputs), **self.spec_augment))
        return self.model(spec_augment(inputs, **self.spec_augment))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, n_per_speaker: int):
        emb = self.embed(inputs)
        emb = emb.float().reshape(labels.shape[0], n_per_speaker, emb.shape[-1])
        with torch.autocast(device_type=emb.device.type, enabled=False):
            return self.loss(emb, labels)


def _seed_everything(seed: int, epoch: int, rank: int) -> None:
    """Random streams of one epoch of one process (mining, masks, worker seeds) start from here."""
    s = int(np.random.SeedSequence((seed, epoch, rank, 0x7EA1)).generate_state(1)[0])
    torch.manual_seed(s)
    np.random.seed(s % 2**32)
    random.seed(s)


def _uses_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def prepare_cpu(cfg: dict, model: nn.Module) -> bool:
    """CPU speed settings that leave the computation unchanged; returns whether channels_last is on.

    - denormal floats are flushed to zero: Adam's running averages of tiny gradients otherwise
      reach the denormal range, where x86 arithmetic is many times slower (GPUs flush anyway);
    - 2-D convolution networks get the NHWC (channels_last) layout that oneDNN computes without
      reordering (``train.channels_last``).
    """
    torch.set_flush_denormal(True)
    if bool(cfg["train"]["channels_last"]) and _uses_conv2d(model):
        model.to(memory_format=torch.channels_last)
        return True
    return False


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


def _find_resume_point(ckpt_dir: Path, cfg: dict, mode: str, exp_dir: Path) -> dict | None:
    if mode == "no":
        return None
    found = epoch_checkpoints(ckpt_dir)
    if not found:
        if mode == "yes":
            raise ConfigError(f"nothing to resume: no epoch checkpoints in {ckpt_dir}")
        return None
    epoch, path = found[-1]
    ckpt = load_checkpoint(path)
    problem = resume_mismatch(ckpt.get("config", {}), cfg)
    if problem:
        if mode == "yes":
            raise ConfigError(f"cannot resume {exp_dir} from {path.name}: {problem}")
        log.warning("not resuming from %s: %s; training from the start", path, problem)
        return None
    ckpt["_path"] = path
    return ckpt


def train(cfg: dict, features: str | Path | None, exp_dir: str | Path, progress: bool | None = None, *,
          data_dir: str | Path | None = None, resume: str = "no", expected_classes: int | None = None) -> Path:
    """Train as configured; returns the path of the final checkpoint.

    Training data: ``features`` (a feature store) or ``data_dir`` (audio). ``resume``: "no",
    "auto" or "yes" (see the module docstring). ``expected_classes`` (voxceleb_trainer's
    ``--nClasses``) is checked against the number of speakers in the data.
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
        return _train(cfg, features, data_dir, exp_dir, ckpt_dir, progress, resume, expected_classes, info, device)
    finally:
        if runlog is not None:
            runlog.close()
        distributed.shutdown(info)


def _train(cfg, features, data_dir, exp_dir: Path, ckpt_dir: Path, progress, resume, expected_classes,
           info, device) -> Path:
    from pyspeaker.losses import loss_class
    from pyspeaker.training.data import feature_config_from, load_train_data
    from pyspeaker.training.sampler import SpeakerBatchSampler, plan_batches
    from pyspeaker.training.schedule import Schedule

    t, d = cfg["train"], cfg["data"]
    seed, max_epoch = int(t["seed"]), int(t["max_epoch"])
    torch.manual_seed(seed)
    data = load_train_data(cfg, features, data_dir)
    num_classes = len(data.speakers)
    if num_classes < 2:
        raise DataError(f"training needs at least 2 speakers, the data have {num_classes}", path=data.source)
    if expected_classes is not None and int(expected_classes) != num_classes:
        raise ConfigError(f"--nClasses {expected_classes} does not match the training data: {data.source} has "
                          f"{num_classes} speakers (the number comes from the data; leave --nClasses out)")
    loss_name = cfg["loss"]["name"]
    n_per = int(d["nPerSpeaker"])
    cls = loss_class(loss_name)
    plan = plan_batches(data.labels, int(d["batch_size"]), n_per, unique_speakers=bool(d["unique_speakers"]),
                        loss_name=loss_name, classification=cls.utts_per_speaker == 1,
                        max_seg_per_spk=int(d["max_seg_per_spk"]), world_size=info.world_size, seed=seed,
                        where=None, epochs=max_epoch)
    sampler = SpeakerBatchSampler(data.labels, plan.batch_size, n_per, int(d["max_seg_per_spk"]), seed, info.rank,
                                  info.world_size, bool(d["unique_speakers"]))

    mopts = model_options(cfg, data.feat_dim)
    model = build_model(**mopts)
    loss_fn = build_loss(nOut=int(cfg["model"]["nOut"]), num_classes=num_classes, **cfg["loss"])
    mixed = bool(t["mixedprec"])
    if mixed and device.type != "cuda":
        log.warning("train.mixedprec applies to CUDA only; training on %s in float32", device)
        mixed = False
    model.to(device)
    loss_fn.to(device)
    channels_last = prepare_cpu(cfg, model) if device.type == "cpu" else False
    a = cfg["augment"]
    spec = None
    if a["specaugment"]:
        spec = {"freq_masks": int(a["freq_masks"]), "freq_width": int(a["freq_width"]),
                "time_masks": int(a["time_masks"]), "time_width": int(a["time_width"])}
    net = SpeakerNet(model, loss_fn, spec)
    opt = make_optimizer(cfg, list(model.parameters()) + list(loss_fn.parameters()))
    schedule = Schedule(cfg["optim"], max_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=mixed)

    validator = None
    if int(t["test_interval"]) > 0:
        if cfg["valid"]["trials"]:
            from pyspeaker.training.validation import Validator

            fcfg = feature_config_from(cfg) if (data_dir is not None and d["feat_conf"]) else None
            validator = Validator(cfg, training_from_audio=data_dir is not None, feature_cfg=fcfg)
        else:
            log.warning("train.test_interval is %d but there is no validation trial list (valid.trials): "
                        "no validation", int(t["test_interval"]))

    base_state = {"model_options": mopts, "config": cfg, "speakers": data.speakers, "feat_id": data.feat_id,
                  "feat_config": data.feat_config, "loss_name": loss_name, "pyspeaker_version": __version__}
    header = METRICS_HEADER if validator is None else METRICS_HEADER.rstrip("\n") + VALID_COLUMNS + "\n"
    rows = [header]
    best_eer = float("inf")
    start_epoch = 1
    ckpt = _find_resume_point(ckpt_dir, cfg, resume, exp_dir)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        loss_fn.load_state_dict(ckpt["loss"])
        opt.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt.get("scheduler", {}))
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        rows = [header] + [_fit_row(r, validator is not None) for r in ckpt.get("metrics", [])[1:]]
        best_eer = float(ckpt.get("best_valid_eer", float("inf")))
        start_epoch = int(ckpt["epoch"]) + 1
        log.info("resuming %s from %s (epoch %d of %d)", exp_dir, ckpt["_path"], start_epoch - 1, max_epoch)

    log.info("Model %s has %d parameters (loss %s: %d more); %d speakers, %d utterances, %s, device %s",
             mopts["name"], count_parameters(model), loss_name, count_parameters(loss_fn), num_classes,
             len(data.dataset), f"feature dim {data.feat_dim}" if data.feat_dim else "waveform input", device)
    log.info("training data: %s", data.description)
    log.info("batches: %d speakers x %d utterances of %d frames per step%s; %d steps per epoch%s%s",
             plan.batch_size, n_per, int(d["crop_frames"]),
             f" per process, {info.world_size} processes" if info.enabled else "", plan.batches_per_epoch,
             "; mixed precision" if mixed else "", "; channels_last" if channels_last else "")
    if validator is not None:
        log.info("validation every %d epochs on %s", int(t["test_interval"]), validator.describe())
    with distributed.all_or_none(info):
        if info.is_main:
            write_text_atomic(exp_dir / "config.yaml", dump_config(cfg))
            if ckpt is None:
                save_checkpoint(ckpt_dir / "init.pt", {**base_state, "epoch": 0, "model": model.state_dict()})

    train_net: nn.Module = net
    if info.enabled:
        train_net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    stepper = _Stepper(train_net, loss_fn, opt, scaler, schedule, list(model.parameters()) + list(loss_fn.parameters()),
                       float(t["grad_clip"]), mixed, device, n_per, info.is_main)
    loader_kw = dict(batch_size=None, num_workers=int(d["num_workers"]), pin_memory=device.type == "cuda")
    state = None
    final = ckpt_dir / "final.pt"
    if start_epoch > max_epoch:
        log.info("%s is already trained to epoch %d (train.max_epoch %d)", exp_dir, start_epoch - 1, max_epoch)
        with distributed.all_or_none(info):
            if info.is_main and not final.is_file():
                save_checkpoint(final, {k: v for k, v in ckpt.items() if k != "_path"})
        return final
    for epoch in range(start_epoch, max_epoch + 1):
        t0 = time.time()
        _seed_everything(seed, epoch, info.rank)
        net.train()
        data.dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        batches = sampler.batches(epoch)
        n_steps = len(batches)
        if n_steps == 0:
            raise DataError(f"epoch {epoch} has no batch of {plan.batch_size} speakers", path=data.source)
        loader = torch.utils.data.DataLoader(data.dataset, sampler=batches, **loader_kw)
        bar = _progress_bar(loader, epoch, max_epoch, progress if info.is_main else False)
        sums, lr = stepper.run_epoch(bar, epoch, n_steps)
        _check_shards(info, batches, epoch)
        distributed.all_reduce_sum(info, sums)
        distributed.average_buffers(info, model)
        tot_loss, tot_acc, seen = float(sums[0] / sums[2]), float(sums[1] / sums[2]), int(sums[2])
        secs = time.time() - t0
        row = f"{epoch}\t{tot_loss:.4f}\t{tot_acc:.2f}\t{lr:.6g}\t{secs:.1f}"
        valid = None
        if validator is not None:
            if epoch % int(t["test_interval"]) == 0 or epoch == max_epoch:
                with distributed.all_or_none(info):  # validation runs on the first process only
                    if info.is_main:
                        valid = validator(model, device)
                row += "\tnan\tnan" if valid is None else f"\t{valid['eer']:.4f}\t{valid['min_dcf']:.4f}"
            else:
                row += "\tnan\tnan"
        rows.append(row + "\n")
        gpu_mem = ""
        if device.type == "cuda":
            gpu_mem = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
        log.info("epoch %d/%d: loss %.4f, accuracy %.2f %%, lr %.3g, %.1f s (%.0f crops/s%s)%s",
                 epoch, max_epoch, tot_loss, tot_acc, lr, secs, seen / max(secs, 1e-9), gpu_mem,
                 "" if valid is None else f"; validation EER {valid['eer']:.2f} %, minDCF {valid['min_dcf']:.4f} "
                                          f"(p_target {valid['p_target']:g})")
        if valid is not None and valid["eer"] < best_eer:
            best_eer = valid["eer"]
        state = {**base_state, "epoch": epoch, "model": model.state_dict(), "loss": loss_fn.state_dict(),
                 "optimizer": opt.state_dict(), "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(),
                 "metrics": list(rows), "best_valid_eer": best_eer, "valid": valid,
                 "world_size": info.world_size}
        with distributed.all_or_none(info):
            if info.is_main:
                write_text_atomic(exp_dir / "metrics.tsv", "".join(rows))
                save_checkpoint(ckpt_dir / f"epoch_{epoch:04d}.pt", state)
                if valid is not None and valid["eer"] <= best_eer:
                    save_checkpoint(ckpt_dir / "best.pt", state)
                    log.info("best validation EER so far: epoch %d -> %s", epoch, ckpt_dir / "best.pt")
                prune_checkpoints(ckpt_dir, int(t["keep_last"]))
    _check_identical(info, net)
    with distributed.all_or_none(info):
        if info.is_main:
            save_checkpoint(final, state)
            log.info("wrote %s", final)
    distributed.barrier(info)
    return final


@dataclass
class _Stepper:
    """One optimiser step per batch: forward (autocast under mixed precision), backward through the
    gradient scaler, clipping, update; the lr and loss margin follow the schedule step by step."""

    net: nn.Module              # SpeakerNet, or its DDP wrapper
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: object
    params: list
    grad_clip: float
    mixed: bool
    device: torch.device
    n_per: int
    show: bool

    def run_epoch(self, batches, epoch: int, n_steps: int) -> tuple[torch.Tensor, float]:
        """Train on ``batches``; returns ([loss * crops, accuracy * crops, crops] summed, last lr)."""
        sums = torch.zeros(3, dtype=torch.float64)
        lr = self.schedule.lr(epoch - 1, n_steps)
        for step, (inputs, crop_labels) in enumerate(batches):
            lr = self.schedule.apply(self.opt, epoch - 1 + step / n_steps, n_steps, self.loss_fn)
            inputs = inputs.to(self.device, non_blocking=True)
            labels = crop_labels[::self.n_per].to(self.device, non_blocking=True)  # one label per speaker
            with torch.autocast(device_type=self.device.type, dtype=torch.float16) if self.mixed else nullcontext():
                loss, acc = self.net(inputs, labels, self.n_per)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            n = float(crop_labels.shape[0])
            sums += torch.tensor([loss.item() * n, (acc.item() if acc is not None else 0.0) * n, n],
                                 dtype=torch.float64)
            if self.show and step % 10 == 0 and hasattr(batches, "set_postfix"):
                batches.set_postfix(loss=f"{sums[0] / sums[2]:.3f}", acc=f"{sums[1] / sums[2]:.1f}")
        if hasattr(batches, "close"):
            batches.close()
        return sums, lr


def _fit_row(row: str, with_valid: bool) -> str:
    """A metrics row of an earlier run with the validation columns added or removed as now."""
    cells = row.rstrip("\n").split("\t")[:5]
    if with_valid:
        old = row.rstrip("\n").split("\t")[5:7]
        cells += old if len(old) == 2 else ["nan", "nan"]
    return "\t".join(cells) + "\n"


def _progress_bar(loader, epoch: int, max_epoch: int, progress: bool | None):
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {epoch}/{max_epoch}", unit="batch", disable=True if progress is False else None,
                leave=False, dynamic_ncols=True)


def _check_shards(info, batches: list[list[int]], epoch: int) -> None:
    """Distributed runs: check that the processes trained on disjoint utterances this epoch."""
    if not info.enabled:
        return
    mine = torch.tensor([i for b in batches for i in b], dtype=torch.int64)
    every = distributed.all_gather(info, mine)
    with distributed.all_or_none(info):  # the first process checks; all stop if it fails
        if info.is_main:
            seen = torch.cat(every)
            if len(torch.unique(seen)) != len(seen):
                raise RuntimeError(f"epoch {epoch}: processes shared training utterances (sampler bug)")
            log.info("epoch %d: %d processes trained on disjoint data (%d utterances each)", epoch,
                     info.world_size, len(mine))


def _check_identical(info, net: nn.Module) -> None:
    if not info.enabled:
        return
    digests = distributed.all_gather_object(info, distributed.state_digest(net))
    if len(set(digests)) != 1:
        raise RuntimeError("the processes ended with different weights: " + ", ".join(d[:8] for d in digests))
    log.info("all %d processes end with identical weights (sha1 %s)", info.world_size, digests[0][:12])
