"""Scoring back-ends (cosine, LDA + PLDA), score normalisation (S-norm, AS-norm) and calibration.

- :mod:`~pyspeaker.scoring.kernel`: the vectorised trial-scoring kernel every back-end reduces to;
- :mod:`~pyspeaker.scoring.cosine`: cosine scoring of a trial list (``score_trials``);
- :mod:`~pyspeaker.scoring.lda`, :mod:`~pyspeaker.scoring.plda`: Kaldi's LDA and two-covariance PLDA;
- :mod:`~pyspeaker.scoring.backend`: training, storing and loading back-ends (``exp/<name>/backend``);
- :mod:`~pyspeaker.scoring.norm`: S-norm / AS-norm against a cohort;
- :mod:`~pyspeaker.scoring.calibration`: linear (logistic-regression) calibration to LLRs;
- :mod:`~pyspeaker.scoring.lists`: streaming readers for 10-million-line trial and score files.
"""
from pyspeaker.scoring.cosine import normalize_rows, score_trials

__all__ = ["normalize_rows", "score_trials"]
