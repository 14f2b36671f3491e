"""Linear calibration and fusion: scores -> log-likelihood ratios.

Calibration maps one system's scores, ``llr = scale * score + offset``; fusion maps several
systems' scores of the same trials, ``llr = sum_k weight_k * score_k + offset``. Calibration is
fusion of one input: both are fitted by the one logistic regression below (:func:`fit_linear_llr`).

Trained as BOSARIS' / Brummer's linear logistic regression: the prior-weighted cross-entropy

    C(scale, offset) = P/T sum_tgt log(1 + e^-(llr_i + logit P)) + (1-P)/N sum_non log(1 + e^(llr_j + logit P))

is minimised (Newton's method on the weights and offset; convex), with Platt's targets
(N+1)/(N+2) and 1/(N+2) in place of 1 and 0 so that separable lists give finite weights. With the default ``P = 0.5``
this is Cllr (up to the factor 1/log 2), the usual calibration objective. The results are stored
as ``calibration.json`` / ``fusion.json``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError



def _read_json(path: str | os.PathLike, what: str) -> dict:
    """The JSON object in ``path``; DataError naming the file (and line) when it is missing or broken."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{what} not found", path=path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None
    if not isinstance(data, dict):
        raise DataError(f"not a {what} (expected a JSON object)", path=path)
    return data

@dataclass
class Calibration:
    scale: float
    offset: float
    p_target: float = 0.5
    num_target: int = 0
    num_nontarget: int = 0
    trials: str | None = None
    scores: str | None = None

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(scores, dtype=np.float64) + self.offset

    def save(self, path: str | os.PathLike) -> None:
        from pyspeaker.fileio import write_text_atomic

        write_text_atomic(path, json.dumps({"type": "linear", "formula": "llr = scale * score + offset",
                                            **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        data = _read_json(path, "calibration file")
        if data.get("type", "linear") != "linear" or "scale" not in data or "offset" not in data:
            raise DataError("not a linear calibration (needs 'scale' and 'offset')", path=path)
        fields = {k: data[k] for k in ("scale", "offset", "p_target", "num_target", "num_nontarget", "trials", "scores")
                  if k in data}
        return cls(**fields)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_linear_llr(target_scores: np.ndarray, nontarget_scores: np.ndarray, p_target: float = 0.5,
                   max_iter: int = 100, tol: float = 1e-12) -> tuple[np.ndarray, float]:
    """``(weights, offset)`` minimising the prior-weighted cross-entropy (the module doc) of
    ``llr = scores @ weights + offset``; ``target_scores`` is ``[n_target, k]`` (or ``[n_target]``
    for one input), ``nontarget_scores`` ``[n_nontarget, k]``."""
    tgt = np.asarray(target_scores, dtype=np.float64)
    non = np.asarray(nontarget_scores, dtype=np.float64)
    if tgt.ndim < 2:
        tgt = tgt.reshape(-1, 1)
    if non.ndim < 2:
        non = non.reshape(-1, 1)
    if len(tgt) == 0 or len(non) == 0:
        raise DataError(f"calibration needs target and non-target trials, got {len(tgt)} and {len(non)}")
    if tgt.shape[1] != non.shape[1]:
        raise ValueError(f"target and non-target scores have {tgt.shape[1]} and {non.shape[1]} inputs")
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    # standardise each input so that Newton starts well-conditioned; map back at the end
    both = np.concatenate([tgt, non])
    centre = both.mean(axis=0)
    spread = both.std(axis=0)
    spread[spread == 0] = 1.0
    x = (both - centre) / spread
    k = x.shape[1]
    label = np.concatenate([np.ones(len(tgt)), np.zeros(len(non))])
    w = np.where(label == 1, p_target / len(tgt), (1 - p_target) / len(non))
    # Platt's targets (N+1)/(N+2) and 1/(N+2): on a small list whose classes separate, the weights stay
    # finite instead of growing until the iteration limit (on large lists they are ~1 and ~0)
    y = np.where(label == 1, (len(tgt) + 1) / (len(tgt) + 2), 1 / (len(non) + 2))
    prior_logit = math.log(p_target / (1 - p_target))
    features = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    theta = np.zeros(k + 1)

    def objective(th: np.ndarray) -> float:
        z = features @ th + prior_logit
        return float(np.sum(w * (y * _softplus(-z) + (1 - y) * _softplus(z))))

    current = objective(theta)
    for _ in range(max_iter):
        z = features @ theta + prior_logit
        p = _sigmoid(z)
        grad = features.T @ (w * (p - y))
        hess = (features * (w * p * (1 - p))[:, None]).T @ features + 1e-12 * np.eye(k + 1)
        step = np.linalg.solve(hess, grad)
        # backtracking keeps Newton monotone when the classes separate (weights grow without bound)
        t, accepted = 1.0, False
        while t > 1e-8:
            candidate = theta - t * step
            value = objective(candidate)
            if value <= current:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break  # no step along this direction helps (converged, or a bad direction): keep the point
        theta, improvement, current = candidate, current - value, value
        if improvement < tol:
            break
    weights = theta[:k] / spread
    offset = float(theta[k] - weights @ centre)
    return weights, offset


def train_calibration(target_scores: np.ndarray, nontarget_scores: np.ndarray, p_target: float = 0.5,
                      max_iter: int = 100, tol: float = 1e-12) -> Calibration:
    """Fit ``scale`` and ``offset`` by prior-weighted logistic regression: fusion of one input."""
    tgt = np.asarray(target_scores, dtype=np.float64).reshape(-1)
    non = np.asarray(nontarget_scores, dtype=np.float64).reshape(-1)
    weights, offset = fit_linear_llr(tgt[:, None], non[:, None], p_target, max_iter, tol)
    return Calibration(scale=float(weights[0]), offset=offset, p_target=p_target,
                       num_target=int(tgt.size), num_nontarget=int(non.size))


@dataclass
class Fusion:
    """``llr = sum_k weights[k] * scores[:, k] + offset`` over the systems named in ``systems``."""

    weights: list[float]
    offset: float
    p_target: float = 0.5
    num_target: int = 0
    num_nontarget: int = 0
    systems: list[str] | None = None
    trials: str | None = None

    def apply(self, scores: np.ndarray) -> np.ndarray:
        x = np.asarray(scores, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.weights):
            raise DataError(f"fusion of {len(self.weights)} systems given scores of shape {x.shape}")
        return x @ np.asarray(self.weights, dtype=np.float64) + self.offset

    def save(self, path: str | os.PathLike) -> None:
        from pyspeaker.fileio import write_text_atomic

        write_text_atomic(path, json.dumps({"type": "fusion", "formula": "llr = sum_k weights[k] * score_k + offset",
                                            **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Fusion":
        data = _read_json(path, "fusion file")
        if data.get("type") != "fusion" or not isinstance(data.get("weights"), list) or "offset" not in data:
            raise DataError("not a fusion file (needs type 'fusion', 'weights' and 'offset')", path=path)
        return cls(**{k: data[k] for k in ("weights", "offset", "p_target", "num_target", "num_nontarget", "systems",
                                           "trials") if k in data})


def train_fusion(target_scores: np.ndarray, nontarget_scores: np.ndarray, p_target: float = 0.5,
                 systems: list[str] | None = None) -> Fusion:
    """Fusion weights and offset from ``[n, k]`` scores of k systems on labelled trials."""
    tgt = np.asarray(target_scores, dtype=np.float64)
    non = np.asarray(nontarget_scores, dtype=np.float64)
    weights, offset = fit_linear_llr(tgt, non, p_target)
    return Fusion(weights=[float(v) for v in weights], offset=offset, p_target=p_target, num_target=len(tgt),
                  num_nontarget=len(non), systems=systems)


def cross_validated_fusion(scores: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0,
                           p_target: float = 0.5) -> np.ndarray:
    """Out-of-fold fused llrs of ``[n, k]`` labelled scores: the trials are dealt into ``folds`` seeded
    folds and each fold is scored by the fusion trained on the other folds. These are the scores to
    compare a fusion with single systems on the trials it is trained on (in-sample llrs flatter it)."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, not {folds}")
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    out = np.empty(len(y))
    for f in range(folds):
        train = fold != f
        if not (y[train].any() and (~y[train]).any()):
            raise DataError(f"fold {f + 1} of {folds} leaves no target or no non-target trials to train on "
                            f"({int(y.sum())} target, {int((~y).sum())} non-target trials in all)")
        out[~train] = train_fusion(x[train & y], x[train & ~y], p_target).apply(x[~train])
    return out
