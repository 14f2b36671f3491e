"""Temporal pooling over frame-level features ``x`` of shape [batch, time, channels].

Functional, so that each model keeps the parameter names of the toolkit it mirrors (e.g.
voxceleb_trainer's ``sap_linear`` / ``attention`` live on the model itself).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POOLING_TYPES = ("SAP", "ASP", "TAP", "MAX", "STATS")


def pooled_dim(kind: str, channels: int) -> int:
    return channels * 2 if kind in ("ASP", "STATS") else channels


def attention_weights(x: torch.Tensor, linear: torch.nn.Linear, attention: torch.Tensor) -> torch.Tensor:
    """Self-attention weights over time: softmax_t( tanh(W x_t + b) . v ), shape [batch, time, 1]."""
    h = torch.tanh(linear(x))
    w = torch.matmul(h, attention).squeeze(2)
    return F.softmax(w, dim=1).unsqueeze(2)


def weighted_mean_std(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.sum(x * w, dim=1)
    # The clamp keeps sqrt differentiable where the weighted variance underflows to ~0.
    sigma = torch.sqrt((torch.sum(x * x * w, dim=1) - mu * mu).clamp(min=1e-5))
    return mu, sigma


def pool(kind: str, x: torch.Tensor, linear: torch.nn.Linear | None = None,
         attention: torch.Tensor | None = None) -> torch.Tensor:
    """Pool [batch, time, channels] to [batch, pooled_dim(kind, channels)]."""
    if kind == "SAP":
        return torch.sum(x * attention_weights(x, linear, attention), dim=1)
    if kind == "ASP":
        return torch.cat(weighted_mean_std(x, attention_weights(x, linear, attention)), dim=1)
    if kind == "TAP":
        return x.mean(dim=1)
    if kind == "MAX":
        return x.max(dim=1).values
    if kind == "STATS":
        return torch.cat([x.mean(dim=1), torch.sqrt(x.var(dim=1, unbiased=False).clamp(min=1e-5))], dim=1)
    raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(POOLING_TYPES)}")
