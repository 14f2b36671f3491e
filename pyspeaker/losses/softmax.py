"""Plain softmax cross-entropy over speakers (voxceleb_trainer's ``softmax``; keys fc.weight/bias)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == labels).float().mean() * 100.0


class Softmax(nn.Module):
    utts_per_speaker = 1
    test_normalize = True

    def __init__(self, nOut: int, nClasses: int):
        super().__init__()
        self.fc = nn.Linear(nOut, nClasses)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        x = x.reshape(-1, x.shape[-1])
        logits = self.fc(x)
        return F.cross_entropy(logits, labels), top1_accuracy(logits.detach(), labels)
