"""Acoustic features: Kaldi fbank / MFCC, voxceleb_trainer log-mel, energy VAD and CMN.

    cfg = load_feature_config("conf/fbank.conf", vad_conf="conf/vad.conf", vad=True, cmn="sliding")
    extract = FeatureExtractor(cfg)
    feats = extract(samples, sample_rate)          # [frames, cfg.dim] float32 numpy

Order, as in Kaldi's VoxCeleb recipe: features -> CMN -> unvoiced frames dropped (the VAD
decision is made on the raw per-frame log energies, before CMN).
"""
from __future__ import annotations

# The config half imports no torch, so that e.g. 'make-features --print-path' starts in a blink;
# FeatureExtractor (torch) is loaded on first use.
from pyspeaker.features.config import FEATURE_VERSION, FeatureConfig, load_feature_config

__all__ = ["FeatureConfig", "load_feature_config", "FeatureExtractor", "FEATURE_VERSION"]


def __getattr__(name: str):
    if name == "FeatureExtractor":
        from pyspeaker.features.extractor import FeatureExtractor

        return FeatureExtractor
    raise AttributeError(f"module 'pyspeaker.features' has no attribute {name!r}")
