"""The training loop: feature-store crops -> embedding network -> loss, one checkpoint per epoch.

Outputs in the experiment directory:
  config.yaml                merged configuration (what actually ran)
  train.log                  timestamped log
  metrics.tsv                one row per epoch: epoch, loss, accuracy, lr, seconds
  checkpoints/init.pt        the randomly initialised model (the "untrained" baseline)
  checkpoints/epoch_NNNN.pt  after each epoch;  checkpoints/final.pt  after the last one
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from pyspeaker import __version__
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import write_text_atomic
from pyspeaker.log import DATEFMT, FORMAT, get_logger
from pyspeaker.losses import build_loss
from pyspeaker.models import build_model, count_parameters
from pyspeaker.store.features import FeatureStore
from pyspeaker.training.checkpoint import save_checkpoint
from pyspeaker.training.config import dump_config
from pyspeaker.training.data import CropDataset, epoch_order, read_utt2spk

log = get_logger(__name__)

METRICS_HEADER = "epoch\tloss\taccuracy\tlr\tseconds\n"


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={setting} but no CUDA device is available")
    return torch.device(setting)


def model_options(cfg: dict, feat_dim: int) -> dict:
    opts = {k: v for k, v in cfg["model"].items()}
    opts["n_mels"] = feat_dim  # from the features, never typed by the user
    return opts


def make_optimizer(cfg: dict, params) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    o = cfg["optim"]
    if o["name"] == "adam":
        opt = torch.optim.Adam(params, lr=float(o["lr"]), weight_decay=float(o["weight_decay"]))
    else:
        opt = torch.optim.SGD(params, lr=float(o["lr"]), momentum=float(o["momentum"]),
                              weight_decay=float(o["weight_decay"]), nesterov=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(o["step_epochs"]), gamma=float(o["lr_decay"]))
    return opt, sched


def _batches(order: list[int], batch_size: int) -> list[list[int]]:
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    # BatchNorm cannot train on a single example.
    return [b for b in batches if len(b) > 1]


def train(cfg: dict, features: str | Path, exp_dir: str | Path, progress: bool | None = None) -> Path:
    """Train as configured; returns the path of the final checkpoint."""
    from tqdm import tqdm

    exp_dir = Path(exp_dir)
    ckpt_dir = exp_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # train.log gets every pyspeaker message of this run, whatever the console logging is.
    file_handler = logging.FileHandler(exp_dir / "train.log", mode="a")
    file_handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    pkg_logger = logging.getLogger("pyspeaker")
    old_level = pkg_logger.level
    pkg_logger.setLevel(logging.INFO)
    pkg_logger.addHandler(file_handler)
    try:
        store = FeatureStore(features, in_memory=bool(cfg["data"]["in_memory"]))
        utt2spk_path = store.dir / "utt2spk"
        if not utt2spk_path.is_file():
            raise DataError("feature store has no utt2spk (was it made by make-features?)", path=utt2spk_path)
        t = cfg["train"]
        torch.manual_seed(int(t["seed"]))
        dataset = CropDataset(store, read_utt2spk(utt2spk_path), int(cfg["data"]["crop_frames"]), int(t["seed"]))
        num_classes = len(dataset.speakers)
        if num_classes < 2:
            raise DataError(f"training needs at least 2 speakers, the store has {num_classes}", path=utt2spk_path)
        device = pick_device(str(t["device"]))
        mopts = model_options(cfg, store.dim)
        model = build_model(**mopts).to(device)
        loss_fn = build_loss(nOut=int(cfg["model"]["nOut"]), num_classes=num_classes,
                             **cfg["loss"]).to(device)
        log.info("Model %s has %d parameters (loss %s: %d more); %d speakers, %d utterances, feature dim %d, device %s",
                 mopts["name"], count_parameters(model), cfg["loss"]["name"], count_parameters(loss_fn),
                 num_classes, len(dataset), store.dim, device)
        write_text_atomic(exp_dir / "config.yaml", dump_config(cfg))
        opt, sched = make_optimizer(cfg, list(model.parameters()) + list(loss_fn.parameters()))
        base_state = {"model_options": mopts, "config": cfg, "speakers": dataset.speakers,
                      "feat_id": store.feat_id, "feat_config": store.config, "pyspeaker_version": __version__}
        save_checkpoint(ckpt_dir / "init.pt", {**base_state, "epoch": 0, "model": model.state_dict()})

        rows = [METRICS_HEADER]
        batch_size = int(cfg["data"]["batch_size"])
        loader_kw = dict(num_workers=int(cfg["data"]["num_workers"]), pin_memory=device.type == "cuda")
        grad_clip = float(t["grad_clip"])
        max_epoch = int(t["max_epoch"])
        for epoch in range(1, max_epoch + 1):
            t0 = time.time()
            model.train()
            loss_fn.train()
            dataset.set_epoch(epoch)
            batches = _batches(epoch_order(len(dataset), int(t["seed"]), epoch), batch_size)
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, **loader_kw)
            tot_loss, tot_acc, seen = 0.0, 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch}/{max_epoch}", unit="batch", disable=True if progress is False else None,
                       leave=False, dynamic_ncols=True)
            for feats, labels in bar:
                feats, labels = feats.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                loss, acc = loss_fn(model(feats), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                opt.step()
                n = labels.shape[0]
                tot_loss += loss.item() * n
                tot_acc += (acc.item() if acc is not None else 0.0) * n
                seen += n
                bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_acc / seen:.1f}")
            if seen == 0:
                raise DataError(f"no training batch could be formed from {len(dataset)} utterances "
                                f"with batch_size {batch_size}", path=store.h5_path)
            lr = opt.param_groups[0]["lr"]
            sched.step()
            secs = time.time() - t0
            rows.append(f"{epoch}\t{tot_loss / seen:.4f}\t{tot_acc / seen:.2f}\t{lr:.6g}\t{secs:.1f}\n")
            write_text_atomic(exp_dir / "metrics.tsv", "".join(rows))
            log.info("epoch %d/%d: loss %.4f, accuracy %.2f %%, lr %.3g, %.1f s (%.0f crops/s)",
                     epoch, max_epoch, tot_loss / seen, tot_acc / seen, lr, secs, seen / secs)
            state = {**base_state, "epoch": epoch, "model": model.state_dict(), "loss": loss_fn.state_dict(),
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state()}
            save_checkpoint(ckpt_dir / f"epoch_{epoch:04d}.pt", state)
        final = ckpt_dir / "final.pt"
        save_checkpoint(final, state)
        log.info("wrote %s", final)
        return final
    finally:
        pkg_logger.removeHandler(file_handler)
        pkg_logger.setLevel(old_level)
        file_handler.close()
