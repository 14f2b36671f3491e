"""Scoring back-ends: cosine scoring of trial lists (LDA/PLDA, score normalisation, calibration)."""
from pyspeaker.scoring.cosine import normalize_rows, score_trials

__all__ = ["normalize_rows", "score_trials"]
