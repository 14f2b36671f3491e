"""Angular prototypical loss (Chung et al., "In defence of metric learning", 2020).

Row i of the batch holds n >= 2 utterances of speaker i: utterance 0 is the query, the mean of
the others the speaker's prototype. The [batch, batch] matrix of scaled cosines
``w * cos(query_i, prototype_j) + b`` is a classification of each query among all prototypes,
with the answer on the diagonal. Parameters ``w`` (clamped > 0) and ``b`` are voxceleb_trainer's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyspeaker.losses import ScaledCosineLoss, as_groups, top1_accuracy


def queries_and_prototypes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [batch, n >= 2, dim] -> (utterance 0 of each row, mean of the rest), each [batch, dim]."""
    x = as_groups(x)
    if x.shape[1] < 2:
        raise ValueError(f"needs at least 2 utterances per speaker in a batch, got {x.shape[1]}")
    return x[:, 0], x[:, 1:].mean(dim=1)


class AngleProto(ScaledCosineLoss):
    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, batch]: row i = query of speaker i against every prototype."""
        query, proto = queries_and_prototypes(x)
        cos = F.normalize(query, dim=1) @ F.normalize(proto, dim=1).T
        return self.scaled(cos)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.similarity(x)
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target), top1_accuracy(logits.detach(), target)
