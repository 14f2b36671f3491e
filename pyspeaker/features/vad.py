"""Kaldi ``compute-vad``: energy-based voice activity detection.

Kaldi (ivector/voice-activity-detection.cc) reads column 0 of the MFCCs (the frame log energy
with --use-energy=true, the default) and marks frame t voiced when, among the frames
t-context..t+context that exist, the fraction whose log energy exceeds

    threshold = vad_energy_threshold + vad_energy_mean_scale * mean(log energy)

is at least vad_proportion_threshold.  (Old Kaldi versions tested frame t itself inside that loop,
so the context had no effect; current Kaldi tests each neighbour, as here.)  Comparisons are made
in float32 like Kaldi's BaseFloat arithmetic.
"""
from __future__ import annotations

import numpy as np

from pyspeaker.features.config import FeatureConfig


def compute_vad(log_energy: np.ndarray, energy_threshold: float = 5.0, energy_mean_scale: float = 0.5,
                frames_context: int = 0, proportion_threshold: float = 0.6) -> np.ndarray:
    """Voiced-frame mask [T] (bool) from per-frame log energies [T]."""
    e = np.asarray(log_energy, dtype=np.float32).reshape(-1)
    num = e.shape[0]
    if num == 0:
        return np.zeros(0, dtype=bool)
    threshold = np.float32(energy_threshold)
    if energy_mean_scale != 0.0:
        mean = np.float32(np.float32(e.sum(dtype=np.float64)) / np.float32(num))
        threshold = np.float32(threshold + np.float32(energy_mean_scale) * mean)
    above = (e > threshold).astype(np.int64)
    c = int(frames_context)
    counts = np.concatenate([[0], np.cumsum(above)])
    t = np.arange(num)
    lo, hi = np.maximum(t - c, 0), np.minimum(t + c, num - 1) + 1
    num_count = counts[hi] - counts[lo]
    den_count = hi - lo
    return num_count.astype(np.float32) >= den_count.astype(np.float32) * np.float32(proportion_threshold)


def vad_from_config(log_energy: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return compute_vad(log_energy, cfg.vad_energy_threshold, cfg.vad_energy_mean_scale,
                       cfg.vad_frames_context, cfg.vad_proportion_threshold)
