"""Cepstral mean (and variance) normalisation: per utterance, or Kaldi's ``apply-cmvn-sliding``.

Sliding CMN follows Kaldi's SlidingWindowCmn (feat/feature-functions.cc): with --center=true the
window of ``cmn_window`` frames is centred on the frame, and shifted right at the start / left
at the end so that it stays full whenever the utterance has at least that many frames; shorter
utterances use all their frames.  Statistics are in float64 like Kaldi's; the window sums come
from one cumulative sum instead of Kaldi's running per-frame updates.
"""
from __future__ import annotations

import torch
from torch import Tensor

VAR_FLOOR_SLIDING = 1.0e-10  # SlidingWindowCmn
VAR_FLOOR_UTTERANCE = 1.0e-20  # ApplyCmvn


def window_bounds(num_frames: int, cmn_window: int, center: bool = True, min_window: int = 100,
                  device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Kaldi's [window_start, window_end) for every frame, vectorised."""
    t = torch.arange(num_frames, device=device)
    if center:
        start = t - cmn_window // 2
        end = start + cmn_window
    else:
        start = t - cmn_window
        end = t + 1
    shift = (-start).clamp_min(0)  # window starting before 0 is moved right
    start, end = start + shift, end + shift
    if not center:
        end = torch.where(end > t, torch.clamp_min(t + 1, min_window), end)
    over = (end - num_frames).clamp_min(0)  # window past the end is moved left
    return (start - over).clamp_min(0), end - over


def sliding_cmn(feats: Tensor, cmn_window: int = 300, center: bool = True, min_window: int = 100,
                norm_vars: bool = False) -> Tensor:
    """Kaldi apply-cmvn-sliding on [T, D] features; returns float32 [T, D]."""
    num, dim = feats.shape
    if num == 0:
        return feats.float()
    x = feats.double()
    start, end = window_bounds(num, cmn_window, center, min_window, feats.device)
    zero = torch.zeros(1, dim, dtype=torch.float64, device=feats.device)
    csum = torch.cat([zero, torch.cumsum(x, dim=0)])
    count = (end - start).to(torch.float64)[:, None]
    total = csum[end] - csum[start]
    out = x - total / count
    if norm_vars:
        csq = torch.cat([zero, torch.cumsum(x * x, dim=0)])
        var = (csq[end] - csq[start]) / count - (total / count) ** 2
        out = out * var.clamp_min(VAR_FLOOR_SLIDING).rsqrt()
        out[(end - start) == 1] = 0.0  # Kaldi: a one-frame window normalises to zero
    return out.float()


def utterance_cmn(feats: Tensor, norm_vars: bool = False) -> Tensor:
    """Subtract the utterance mean (and divide by its std, Kaldi's ApplyCmvn) of [T, D] features."""
    if feats.shape[0] == 0:
        return feats.float()
    x = feats.double()
    mean = x.mean(dim=0, keepdim=True)
    out = x - mean
    if norm_vars:
        var = (x * x).mean(dim=0, keepdim=True) - mean * mean
        out = out * var.clamp_min(VAR_FLOOR_UTTERANCE).rsqrt()
    return out.float()


def apply_cmn(feats: Tensor, mode: str, cmn_window: int = 300, norm_vars: bool = False) -> Tensor:
    """``mode``: "none" | "utterance" | "sliding" (centred window, as Kaldi's VoxCeleb recipe)."""
    if mode == "none":
        return feats
    if mode == "utterance":
        return utterance_cmn(feats, norm_vars)
    if mode == "sliding":
        return sliding_cmn(feats, cmn_window, center=True, norm_vars=norm_vars)
    raise ValueError(f"unknown cmn mode {mode!r}")
