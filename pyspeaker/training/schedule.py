"""Learning-rate and margin schedules, as functions of training progress in (fractional) epochs.

``progress`` is the number of epochs completed when a step starts: step s (0-based) of n in epoch
e (1-based) has progress ``e - 1 + s / n``. The lr is set before every step, so warm-up is smooth
and a resumed run gets exactly the lr an uninterrupted one had.

- ``step``: lr * lr_decay ** floor(progress / step_epochs)   (voxceleb_trainer's StepLR)
- ``exponential``: lr * lr_decay ** progress                  (smooth, per step)
- ``cosine``: from lr down to min_lr over max_epoch epochs, half a cosine period
- ``warmup_epochs`` W > 0 (any scheduler): the factor is also multiplied by
  min(1, (progress + 1/n) / W), a linear ramp from ~0 to 1 over the first W epochs
- margin warm-up (``margin_warmup_epochs`` M > 0): the loss margin grows linearly from 0 to its
  configured value over the first M epochs (large margins from the start can stall training)

With a time budget (``train.max_minutes``, ``budget_s`` here) progress is also measured on the
clock: every step's progress is ``max(progress, max_epoch * min(elapsed / budget, 1))`` "schedule
epochs", ``elapsed`` being the training time the trainer sets (``elapsed_s``, the same on every
process). The rules then follow whichever ends training first: when the budget does, they run over
it as they would over max_epoch epochs (the cosine reaches min_lr when the budget is spent, a
warm-up of W epochs lasts W / max_epoch of the budget, and so do step_epochs, the exponential decay
and the margin warm-up); when max_epoch epochs take less than the budget, they end with the last
epoch as without a budget (a budget is a limit, not a reason to stop with the lr still high).
"""
from __future__ import annotations

import math


class Schedule:
    def __init__(self, optim_cfg: dict, max_epoch: int, budget_s: float = 0.0):
        self.name = optim_cfg["scheduler"]
        self.base_lr = float(optim_cfg["lr"])
        self.decay = float(optim_cfg["lr_decay"])
        self.step_epochs = int(optim_cfg["step_epochs"])
        self.min_lr = float(optim_cfg["min_lr"])
        self.warmup = float(optim_cfg["warmup_epochs"])
        self.margin_warmup = float(optim_cfg["margin_warmup_epochs"])
        self.max_epoch = int(max_epoch)
        self.budget_s = float(budget_s)
        self.elapsed_s = 0.0
        self.last_progress = 0.0
        self.last_lr = self.base_lr

    def factor(self, progress: float, steps_per_epoch: int = 1) -> float:
        if self.name == "step":
            f = self.decay ** math.floor(progress / self.step_epochs + 1e-9)
        elif self.name == "exponential":
            f = self.decay ** progress
        else:
            floor = min(self.min_lr / self.base_lr, 1.0)
            f = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress / self.max_epoch, 1.0)))
        if self.warmup > 0:
            f *= min(1.0, (progress + 1.0 / max(steps_per_epoch, 1)) / self.warmup)
        return f

    def lr(self, progress: float, steps_per_epoch: int = 1) -> float:
        return self.base_lr * self.factor(progress, steps_per_epoch)

    def margin(self, target: float, progress: float) -> float:
        if self.margin_warmup <= 0:
            return target
        return target * min(1.0, progress / self.margin_warmup)

    def schedule_progress(self, progress: float) -> float:
        """The progress the rules use: ``progress`` in epochs or, with a budget, the budget's share spent
        in schedule epochs when that is further on (whichever ends training first)."""
        if self.budget_s > 0:
            return max(progress, self.max_epoch * min(self.elapsed_s / self.budget_s, 1.0))
        return progress

    def apply(self, optimizer, progress: float, steps_per_epoch: int, loss=None) -> float:
        """Set the lr of every parameter group (and the loss margin) for a step at ``progress``
        (epochs; with a budget, ``elapsed_s`` decides instead)."""
        progress = self.schedule_progress(progress)
        lr = self.lr(progress, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if loss is not None and getattr(loss, "has_margin", False):
            loss.set_margin(self.margin(loss.margin, progress))
        self.last_progress, self.last_lr = progress, lr
        return lr

    def state_dict(self) -> dict:
        return {"name": self.name, "last_progress": self.last_progress, "last_lr": self.last_lr}

    def load_state_dict(self, state: dict) -> None:
        # the lr is a function of progress: only the bookkeeping is restored
        self.last_progress = float(state.get("last_progress", 0.0))
        self.last_lr = float(state.get("last_lr", self.base_lr))
