"""The training step: the embedding network and its loss as one module, the optimiser, and the
loop over one epoch's batches (forward, backward, clipping, update, schedule)."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from pyspeaker.log import get_logger

log = get_logger(__name__)


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


@dataclass
class Stepper:
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
