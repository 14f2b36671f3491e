"""Scoring back-ends (cosine, LDA + PLDA), score normalisation (S-norm, AS-norm) and calibration.

- :mod:`~pyspeaker.scoring.kernel`: the vectorised trial-scoring kernel every back-end reduces to;
- :mod:`~pyspeaker.scoring.backend`: the back-ends (``CosineBackend``, ``PldaBackend``): training,
  storing and loading them (``exp/<name>/backend``), scoring embedding rows;
- :mod:`~pyspeaker.scoring.pipeline`: a trial list scored end to end (``score_codes``);
- :mod:`~pyspeaker.scoring.lda`, :mod:`~pyspeaker.scoring.plda`: Kaldi's LDA and two-covariance PLDA;
- :mod:`~pyspeaker.scoring.norm`: S-norm / AS-norm against a cohort;
- :mod:`~pyspeaker.scoring.calibration`: linear (logistic-regression) calibration to LLRs;
- :mod:`~pyspeaker.scoring.lists`: score files, read and written, and matched to their trial list.
"""
