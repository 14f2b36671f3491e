"""Additive angular margin softmax (ArcFace): s * cos(theta_y + m) for the true class.

Weight ``weight`` [nClasses, nOut] as voxceleb_trainer's aamsoftmax (the transpose of amsoftmax's
``W``). Where theta_y + m would pass pi, cos(theta + m) stops decreasing; as in voxceleb_trainer
the target logit then continues as cos(theta) - m sin(m) (``easy_margin=False``), or keeps
cos(theta) wherever cos(theta) <= 0 (``easy_margin=True``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses import flatten, top1_accuracy


class AAMSoftmax(nn.Module):
    utts_per_speaker = 1
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = True

    def __init__(self, nOut: int, nClasses: int, margin: float = 0.2, scale: float = 30.0, easy_margin: bool = False):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.margin = float(margin)
        self.s = float(scale)
        self.easy_margin = bool(easy_margin)
        self.weight = nn.Parameter(torch.empty(nClasses, nOut))
        nn.init.xavier_normal_(self.weight, gain=1)
        self.set_margin(self.margin)

    def set_margin(self, margin: float) -> None:
        """The margin in use now (a margin warm-up schedule moves it towards ``self.margin``)."""
        self.m = float(margin)
        self.cos_m, self.sin_m = math.cos(self.m), math.sin(self.m)
        self.th = math.cos(math.pi - self.m)          # cos(theta) below this: theta + m > pi
        self.mm = math.sin(math.pi - self.m) * self.m

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        """[rows, nOut] -> [rows, nClasses]."""
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        x, labels = flatten(x, labels)
        cosine = self.cosine(x)
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(0, 1))
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        one_hot = F.one_hot(labels, cosine.shape[1]).bool()
        logits = self.s * torch.where(one_hot, phi, cosine)
        return F.cross_entropy(logits, labels), top1_accuracy(logits.detach(), labels)
