"""Triplet loss with hard-negative mining and a margin, on L2-normalised embeddings.

Row i of the batch holds n >= 2 utterances of speaker i: utterance 0 is the anchor, the mean of
the others the positive (for n = 2 simply utterance 1). The negatives of anchor i are the
positives of the other speakers in the batch; the [batch, batch] matrix of squared distances
``d[i, j] = ||anchor_i - positive_j||^2`` has the positive pairs on its diagonal. Per anchor one
negative is mined (as voxceleb_trainer's options):

- ``hard_rank >= 0``: with probability ``hard_prob`` one of the ``hard_rank + 1`` closest
  negatives (uniformly), otherwise any negative (uniformly);
- ``hard_rank < 0``: semi-hard, a negative farther than the positive but within the margin,
  or any negative where there is none.

loss = mean(relu(d_pos - d_neg + margin)); accuracy = rows whose positive is closer than every
negative. The draws use torch's generator, so runs and resumed runs repeat exactly.

voxceleb_trainer's version cannot train on current PyTorch: it asserts exactly two utterances
per speaker with a bare AssertionError, its distance matrix broadcasts to [batch, dim] and fails
with an IndexError, and it returns a numpy value; here the batch layout is checked when the
config loads and the matrix is [batch, batch] (tests check both).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.losses.angleproto import queries_and_prototypes


class Triplet(nn.Module):
    utts_per_speaker = 2
    max_utts_per_speaker = None
    test_normalize = True
    has_margin = False  # its margin is a distance, not a softmax margin: no warm-up

    def __init__(self, nOut: int = 0, nClasses: int = 0, margin: float = 0.1, hard_rank: int = 10,
                 hard_prob: float = 0.5):
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if not 0.0 <= hard_prob <= 1.0:
            raise ValueError(f"hard_prob must be in [0, 1], got {hard_prob}")
        self.margin = float(margin)
        self.hard_rank = int(hard_rank)
        self.hard_prob = float(hard_prob)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distances [batch, batch] between each anchor and each speaker's positive."""
        anchor, positive = queries_and_prototypes(x)
        anchor, positive = F.normalize(anchor, dim=1), F.normalize(positive, dim=1)
        # ||a - p||^2 = 2 - 2 cos for unit vectors; clamp keeps rounding from going negative
        return (2.0 - 2.0 * anchor @ positive.T).clamp(min=0.0)

    def mine_negatives(self, dist: torch.Tensor) -> torch.Tensor:
        """One negative column per anchor row (never the diagonal); ``dist`` [batch, batch]."""
        b = dist.shape[0]
        if b < 2:
            raise ValueError("triplet loss needs at least 2 speakers in a batch")
        device = dist.device
        eye = torch.eye(b, dtype=torch.bool, device=device)
        masked = dist.masked_fill(eye, float("inf"))
        order = masked.argsort(dim=1)[:, : b - 1]                      # negatives, closest first
        rows = torch.arange(b, device=device)
        anywhere = order[rows, torch.randint(0, b - 1, (b,), device=device)]
        if self.hard_rank >= 0:
            top = min(self.hard_rank, b - 2) + 1
            hard = order[rows, torch.randint(0, top, (b,), device=device)]
            use_hard = torch.rand(b, device=device) < self.hard_prob
            return torch.where(use_hard, hard, anywhere)
        pos = dist.diagonal().unsqueeze(1)
        semi = (masked > pos) & (masked < pos + self.margin)
        score = torch.rand(b, b, device=device).masked_fill(~semi, -1.0)
        return torch.where(semi.any(dim=1), score.argmax(dim=1), anywhere)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        dist = self.distances(x)
        with torch.no_grad():
            neg_idx = self.mine_negatives(dist.detach())
        rows = torch.arange(dist.shape[0], device=dist.device)
        d_pos, d_neg = dist[rows, rows], dist[rows, neg_idx]
        loss = F.relu(d_pos - d_neg + self.margin).mean()
        with torch.no_grad():
            closest_negative = dist.masked_fill(torch.eye(len(rows), dtype=torch.bool, device=dist.device),
                                                float("inf")).min(dim=1).values
            acc = (d_pos < closest_negative).float().mean() * 100.0
        return loss, acc
