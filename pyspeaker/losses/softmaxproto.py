"""Softmax + angular prototypical (voxceleb_trainer's ``softmaxproto``, used by its ResNetSE34V2 model).

The sum of a speaker-classification cross-entropy over every utterance of the batch and the
angleproto loss over the batch's speakers. Keys ``softmax.fc.{weight,bias}`` and
``angleproto.{w,b}`` as voxceleb_trainer. Accuracy is the classifier's.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from pyspeaker.losses.angleproto import AngleProto
from pyspeaker.losses.softmax import Softmax


class SoftmaxProto(nn.Module):
    utts_per_speaker = 2
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = False

    def __init__(self, nOut: int, nClasses: int, init_w: float = 10.0, init_b: float = -5.0):
        super().__init__()
        self.softmax = Softmax(nOut, nClasses)
        self.angleproto = AngleProto(init_w=init_w, init_b=init_b)

    def forward(self, x: torch.Tensor, labels: torch.Tensor):
        loss_s, acc = self.softmax(x, labels)
        loss_p, _ = self.angleproto(x)
        return loss_s + loss_p, acc
