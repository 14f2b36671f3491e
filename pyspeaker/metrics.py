"""Verification metrics: error-rate curves, EER, minDCF, and Kaldi's ``compute-eer``.

Everything is computed by sorting the pooled scores once (O(N log N)); there is no per-trial
Python loop, so a million trials take a fraction of a second.

Operating points are *tie-aware*: a trial is accepted when ``score >= threshold`` and there is one
point per distinct score value, so trials with equal scores always move together and the results
do not depend on the order of the input (a per-trial sweep would put a tied target before or
after a tied non-target depending on how the sort broke the tie).

All rates are fractions in [0, 1]; the commands print the EER in percent.

For calibrated scores (log-likelihood ratios) there are also the actual DCF (decisions at the Bayes
threshold ``log(c_fa (1 - p) / (c_miss p))``), Cllr and min Cllr (Cllr after the optimal monotone
recalibration, found by the pool-adjacent-violators algorithm). For comparison with other
toolkits, :func:`kaldi_eer` and :func:`kaldi_min_dcf` reproduce Kaldi's ``compute-eer`` and
``sid/compute_min_dcf.py`` (the latter is also voxceleb_trainer's minDCF), and
:func:`voxceleb_trainer_eer` voxceleb_trainer's EER.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

ArrayLike = np.ndarray | Sequence[float]


def _as_scores(x: ArrayLike, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"no {what} scores")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} scores contain NaN or infinite values")
    return a


def _counts_below(target_scores: ArrayLike, nontarget_scores: ArrayLike):
    """``(values, targets_below, nontargets_below, n_tgt, n_non)``: the distinct scores ascending and,
    for each, how many target and non-target scores are strictly below it."""
    tgt = _as_scores(target_scores, "target")
    non = _as_scores(nontarget_scores, "non-target")
    scores = np.concatenate([tgt, non])
    is_target = np.concatenate([np.ones(tgt.size, dtype=bool), np.zeros(non.size, dtype=bool)])
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    del scores
    # targets strictly below sorted position i = targets_below[i]
    targets_below = np.concatenate([[0], np.cumsum(is_target[order], dtype=np.int64)])
    del order, is_target
    # first position of each distinct value: everything before it is rejected at that threshold
    starts = np.flatnonzero(np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1]]))
    n_tgt_rejected = targets_below[starts]
    return sorted_scores[starts], n_tgt_rejected, starts - n_tgt_rejected, tgt.size, non.size


def error_rates(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tie-aware operating points ``(thresholds, p_miss, p_fa)``, thresholds ascending.

    Point k accepts the trials with ``score >= thresholds[k]``. There is one point per distinct
    score value plus the reject-all end point (threshold ``+inf``, p_miss 1, p_fa 0). The
    accept-all end point (p_miss 0, p_fa 1) is the first point, whose threshold is the lowest
    score. ``p_miss`` never decreases and ``p_fa`` never increases along the arrays.
    """
    values, n_tgt_rejected, n_non_rejected, n_tgt, n_non = _counts_below(target_scores, nontarget_scores)
    thresholds = np.append(values, np.inf)
    p_miss = np.append(n_tgt_rejected / n_tgt, 1.0)
    p_fa = np.append((n_non - n_non_rejected) / n_non, 0.0)
    return thresholds, p_miss, p_fa


def eer_from_rates(thresholds: np.ndarray, p_miss: np.ndarray, p_fa: np.ndarray) -> tuple[float, float]:
    """EER and its threshold from the points of :func:`error_rates` (see :func:`compute_eer`)."""
    diff = p_miss - p_fa  # non-decreasing, from -1 (accept all) to +1 (reject all)
    i1 = int(np.argmax(diff >= 0))  # first point at or past the crossing; exists since diff[-1] = 1
    i0 = i1 - 1  # last point before it; i1 >= 1 because diff[0] = -1
    d0, d1 = diff[i0], diff[i1]
    alpha = -d0 / (d1 - d0)  # in (0, 1]: where the segment i0 -> i1 crosses p_miss = p_fa
    eer = p_miss[i0] + alpha * (p_miss[i1] - p_miss[i0])
    t0, t1 = thresholds[i0], thresholds[i1]
    # Any threshold in (t0, t1] makes the same decisions; report the interpolated one unless the
    # segment ends at the reject-all point (+inf), where only t1 is exact and we keep the top score.
    threshold = t0 + alpha * (t1 - t0) if np.isfinite(t1) else t0
    return float(eer), float(threshold)


def compute_eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[float, float]:
    """Equal error rate (fraction) and the score threshold at which it is reached.

    As the NIST SRE scorer and WeSpeaker: the EER is where the straight line between the last
    operating point with ``p_miss < p_fa`` and the first with ``p_miss >= p_fa`` crosses the
    diagonal, here over the tie-aware points of :func:`error_rates`. The threshold is interpolated
    between those two points' thresholds in the same proportion (so accepting ``score >=
    threshold`` gives the decisions of the second point); if the second point is the reject-all
    end, the threshold is the highest score.
    """
    return eer_from_rates(*error_rates(target_scores, nontarget_scores))


def min_dcf_from_rates(thresholds: np.ndarray, p_miss: np.ndarray, p_fa: np.ndarray, p_target: float,
                       c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised minimum DCF and its threshold from the points of :func:`error_rates`."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss} c_fa={c_fa}")
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))  # cost of the best trivial system
    k = int(np.argmin(dcf))
    return float(dcf[k] / c_def), float(thresholds[k])


def compute_min_dcf(target_scores: ArrayLike, nontarget_scores: ArrayLike, p_target: float,
                    c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum detection cost over all thresholds, normalised by ``min(c_miss*p, c_fa*(1-p))``.

    Returns ``(min_dcf, threshold)``; the threshold is that of the best operating point (accept
    ``score >= threshold``; ``+inf`` when rejecting everything is best). With ties the lowest such
    threshold is returned.
    """
    return min_dcf_from_rates(*error_rates(target_scores, nontarget_scores), p_target, c_miss, c_fa)


def kaldi_eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[float, float]:
    """EER exactly as Kaldi's ``compute-eer`` (src/ivectorbin/compute-eer.cc), vectorised.

    Kaldi walks the sorted target scores; at target position p it looks at the non-target at
    position ``N - 1 - int(N * p / T)`` and stops at the first p where that non-target score is
    below the target score (or at the last target). The EER is ``p / T`` and the threshold the
    target score at p. Scores are rounded to float32 first, as Kaldi reads them as BaseFloat.
    It ignores ties and does not interpolate, so it can differ from :func:`compute_eer` by up to
    about 1/T; use it to compare with numbers from Kaldi recipes.
    """
    tgt = np.sort(_as_scores(target_scores, "target").astype(np.float32))
    non = np.sort(_as_scores(nontarget_scores, "non-target").astype(np.float32))
    n_tgt, n_non = tgt.size, non.size
    positions = np.arange(n_tgt - 1, dtype=np.int64)
    # exact integer form of Kaldi's truncated double division (fractions are >= 1/T, far above
    # double rounding, so the two agree)
    non_pos = np.maximum(n_non - 1 - (n_non * positions) // n_tgt, 0)
    stop = np.flatnonzero(non[non_pos] < tgt[positions])
    p = int(stop[0]) if stop.size else n_tgt - 1
    return p / n_tgt, float(tgt[p])


def voxceleb_trainer_eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> float:
    """EER (fraction) exactly as voxceleb_trainer's ``tuneThresholdfromScore``.

    Its points are ``sklearn.metrics.roc_curve``'s: one per distinct score (descending, accept
    ``score >= it``), minus those that sklearn's default ``drop_intermediate`` removes (the
    middle of a straight, evenly stepped run), after the (0, 0) start. It takes the first point
    minimising |FNR - FPR| and reports max(FPR, FNR): no interpolation, and because of the
    dropped points it can be above :func:`compute_eer`.
    """
    _, n_tgt_rejected, n_non_rejected, n_tgt, n_non = _counts_below(target_scores, nontarget_scores)
    tps, fps = (n_tgt - n_tgt_rejected)[::-1], (n_non - n_non_rejected)[::-1]
    if len(fps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[keep], fps[keep]
    fpr, fnr = np.r_[0, fps] / n_non, 1 - np.r_[0, tps] / n_tgt
    i = int(np.nanargmin(np.absolute(fnr - fpr)))
    return float(max(fpr[i], fnr[i]))


def det_points(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(p_fa, p_miss)`` of the tie-aware operating points, for DET plots."""
    _, p_miss, p_fa = error_rates(target_scores, nontarget_scores)
    return p_fa, p_miss


def kaldi_min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float, c_miss: float = 1.0,
                  c_fa: float = 1.0) -> tuple[float, float]:
    """minDCF exactly as Kaldi's ``sid/compute_min_dcf.py`` (and voxceleb_trainer's
    ``ComputeMinDcf``): scores in trial order are sorted (stable, so ties keep trial order), the
    point after rejecting the k lowest trials is evaluated for every k >= 1, and the threshold is
    the score of the last rejected trial. Not tie-aware: tied trials can be split.
    """
    s = _as_scores(scores, "all")
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if y.size != s.size:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    n_tgt = int(y.sum())
    n_non = y.size - n_tgt
    if n_tgt == 0 or n_non == 0:
        raise ValueError("need both target and non-target scores")
    order = np.argsort(s, kind="stable")
    sorted_labels = y[order]
    fnr = np.cumsum(sorted_labels, dtype=np.int64) / n_tgt
    fpr = 1.0 - np.cumsum(~sorted_labels, dtype=np.int64) / n_non
    c_det = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    k = int(np.argmin(c_det))  # the first minimum, as the loop's strict '<'
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(c_det[k] / c_def), float(s[order[k]])


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR threshold of minimum expected cost: ``log(c_fa (1 - p) / (c_miss p))``."""
    return float(np.log(c_fa * (1.0 - p_target) / (c_miss * p_target)))


def act_dcf(target_llrs: ArrayLike, nontarget_llrs: ArrayLike, p_target: float, c_miss: float = 1.0,
            c_fa: float = 1.0) -> tuple[float, float]:
    """Normalised actual DCF of calibrated scores: decisions ``llr >= bayes_threshold`` (returned too)."""
    tgt = _as_scores(target_llrs, "target")
    non = _as_scores(nontarget_llrs, "non-target")
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    threshold = bayes_threshold(p_target, c_miss, c_fa)
    p_miss = np.count_nonzero(tgt < threshold) / tgt.size
    p_fa = np.count_nonzero(non >= threshold) / non.size
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float((c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / c_def), threshold


def cllr(target_llrs: ArrayLike, nontarget_llrs: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits: ``(mean log2(1 + e^-llr_tgt) + mean log2(1 + e^llr_non)) / 2``.

    0 for a perfect calibrated system, 1 for one that always says LLR 0.
    """
    tgt = _as_scores(target_llrs, "target")
    non = _as_scores(nontarget_llrs, "non-target")
    return float((np.mean(np.logaddexp(0.0, -tgt)) + np.mean(np.logaddexp(0.0, non))) / (2.0 * np.log(2.0)))


def min_cllr(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> float:
    """Cllr after the best monotone (non-decreasing) score -> LLR map, found with PAV.

    Tied scores are pooled first, so they get one LLR. The PAV posteriors are turned into LLRs by
    removing the empirical prior ``T / (T + N)``.
    """
    from scipy.optimize import isotonic_regression

    tgt = _as_scores(target_scores, "target")
    non = _as_scores(nontarget_scores, "non-target")
    values, inverse = np.unique(np.concatenate([tgt, non]), return_inverse=True)
    n_tgt_at = np.bincount(inverse[:tgt.size], minlength=values.size).astype(np.float64)
    n_all_at = np.bincount(inverse, minlength=values.size).astype(np.float64)
    posterior = isotonic_regression(n_tgt_at / n_all_at, weights=n_all_at, increasing=True).x
    prior_logit = np.log(tgt.size / non.size)
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - prior_logit
    # a block holding a target has posterior > 0 and one holding a non-target posterior < 1, so the
    # infinite LLRs only ever get weight 0
    tgt_cost = np.where(n_tgt_at > 0, n_tgt_at * np.logaddexp(0.0, -np.where(n_tgt_at > 0, llr, 0.0)), 0.0)
    n_non_at = n_all_at - n_tgt_at
    non_cost = np.where(n_non_at > 0, n_non_at * np.logaddexp(0.0, np.where(n_non_at > 0, llr, 0.0)), 0.0)
    return float((tgt_cost.sum() / tgt.size + non_cost.sum() / non.size) / (2.0 * np.log(2.0)))
