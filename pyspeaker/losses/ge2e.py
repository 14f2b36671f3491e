"""Generalised end-to-end loss (Wan et al. 2018), softmax variant, as voxceleb_trainer's ``ge2e``.

For utterance i of speaker j the logits are ``w * cos(x_ji, c_k) + b`` against every speaker's
centroid c_k; for its own speaker the centroid leaves the utterance out (the mean of the other
n - 1). The similarity tensor is [batch, n, batch]; each of the batch * n utterances is a
classification among the batch speakers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyspeaker.losses import ScaledCosineLoss, as_groups, top1_accuracy


class GE2E(ScaledCosineLoss):
    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, n, batch]: utterance (j, i) against the centroid of speaker k."""
        x = as_groups(x)
        b, n, _ = x.shape
        if n < 2:
            raise ValueError(f"ge2e needs at least 2 utterances per speaker in a batch, got {n}")
        unit = F.normalize(x, dim=2)
        centroids = F.normalize(x.mean(dim=1), dim=1)                                  # [b, d]
        cos = torch.einsum("jid,kd->jik", unit, centroids)                             # [b, n, b]
        exclusive = (x.sum(dim=1, keepdim=True) - x) / (n - 1)                         # [b, n, d]
        own = (unit * F.normalize(exclusive, dim=2)).sum(dim=2)                        # [b, n]
        eye = torch.eye(b, dtype=torch.bool, device=x.device).unsqueeze(1)             # [b, 1, b]
        cos = torch.where(eye, own.unsqueeze(2), cos)
        return self.scaled(cos)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.similarity(x)
        b, n, _ = logits.shape
        target = torch.arange(b, device=logits.device).repeat_interleave(n)
        flat = logits.reshape(b * n, b)
        return F.cross_entropy(flat, target), top1_accuracy(flat.detach(), target)
