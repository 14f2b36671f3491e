"""Additive-margin softmax (CosFace): s * (cos(theta_y) - m) for the true class.

Weight layout ``W`` [nOut, nClasses] as voxceleb_trainer's amsoftmax, so its checkpoints load.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses.softmax import top1_accuracy


class AMSoftmax(nn.Module):
    utts_per_speaker = 1
    test_normalize = True

    def __init__(self, nOut: int, nClasses: int, margin: float = 0.3, scale: float = 30.0):
        super().__init__()
        self.m = margin
        self.s = scale
        self.W = nn.Parameter(torch.empty(nOut, nClasses))
        nn.init.xavier_normal_(self.W, gain=1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        x = x.reshape(-1, x.shape[-1])
        cos = F.normalize(x, dim=1) @ F.normalize(self.W, dim=0)
        logits = self.s * (cos - self.m * F.one_hot(labels, cos.shape[1]).to(cos.dtype))
        return F.cross_entropy(logits, labels), top1_accuracy(logits.detach(), labels)
