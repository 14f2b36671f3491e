"""Plain softmax cross-entropy over speakers (voxceleb_trainer's ``softmax``; keys fc.weight/bias)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses import flatten, top1_accuracy

__all__ = ["Softmax", "top1_accuracy"]


class Softmax(nn.Module):
    utts_per_speaker = 1
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = False

    def __init__(self, nOut: int, nClasses: int):
        super().__init__()
        self.fc = nn.Linear(nOut, nClasses)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, nOut] -> [rows, nClasses]."""
        return self.fc(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        x, labels = flatten(x, labels)
        logits = self.logits(x)
        return F.cross_entropy(logits, labels), top1_accuracy(logits.detach(), labels)
