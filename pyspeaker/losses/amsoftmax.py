"""Additive-margin softmax (CosFace): s * (cos(theta_y) - m) for the true class.

Weight layout ``W`` [nOut, nClasses] as voxceleb_trainer's amsoftmax, so its checkpoints load.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses import flatten, top1_accuracy


class AMSoftmax(nn.Module):
    utts_per_speaker = 1
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = True

    def __init__(self, nOut: int, nClasses: int, margin: float = 0.3, scale: float = 30.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.margin = self.m = float(margin)
        self.s = float(scale)
        self.W = nn.Parameter(torch.empty(nOut, nClasses))
        nn.init.xavier_normal_(self.W, gain=1)

    def set_margin(self, margin: float) -> None:
        """The margin in use now (a margin warm-up schedule moves it towards ``self.margin``)."""
        self.m = float(margin)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each row to each class: [rows, nOut] -> [rows, nClasses]."""
        return F.normalize(x, dim=1) @ F.normalize(self.W, dim=0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        x, labels = flatten(x, labels)
        cos = self.cosine(x)
        logits = self.s * (cos - self.m * F.one_hot(labels, cos.shape[1]).to(cos.dtype))
        return F.cross_entropy(logits, labels), top1_accuracy(logits.detach(), labels)
