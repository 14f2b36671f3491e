"""Prototypical loss (Snell et al. 2017) with squared Euclidean distances.

As angleproto, but the logits are minus the squared Euclidean distances [batch, batch] between
each speaker's query (utterance 0) and every prototype (the mean of the other utterances).
voxceleb_trainer's ``proto`` broadcasts that matrix to [batch, dim] on current PyTorch and trains
on a wrong objective without a word; here the matrix is [batch, batch] (checked by the tests).
Embeddings are not normalised for scoring (``test_normalize`` False, as voxceleb_trainer).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses import top1_accuracy
from pyspeaker.losses.angleproto import queries_and_prototypes


class Proto(nn.Module):
    utts_per_speaker = 2
    max_utts_per_speaker = None
    test_normalize = False
    has_margin = False

    def __init__(self, nOut: int = 0, nClasses: int = 0):
        super().__init__()

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, batch]: -||query_i - prototype_j||^2."""
        query, proto = queries_and_prototypes(x)
        return -torch.cdist(query, proto).pow(2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.similarity(x)
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target), top1_accuracy(logits.detach(), target)
