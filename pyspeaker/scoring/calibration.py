"""Linear calibration: scores -> log-likelihood ratios ``llr = scale * score + offset``.

Trained as BOSARIS' / Brummer's linear logistic regression: the prior-weighted cross-entropy

    C(scale, offset) = P/T sum_tgt log(1 + e^-(llr_i + logit P)) + (1-P)/N sum_non log(1 + e^(llr_j + logit P))

is minimised (Newton's method on two parameters; convex). With the default ``P = 0.5`` this is
Cllr (up to the factor 1/log 2), the usual calibration objective. The result is stored as
``calibration.json``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError


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
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise DataError("calibration file not found", path=path) from None
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None
        if data.get("type", "linear") != "linear" or "scale" not in data or "offset" not in data:
            raise DataError("not a linear calibration (needs 'scale' and 'offset')", path=path)
        fields = {k: data[k] for k in ("scale", "offset", "p_target", "num_target", "num_nontarget", "trials", "scores")
                  if k in data}
        return cls(**fields)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def train_calibration(target_scores: np.ndarray, nontarget_scores: np.ndarray, p_target: float = 0.5,
                      max_iter: int = 100, tol: float = 1e-12) -> Calibration:
    """Fit ``scale`` and ``offset`` by prior-weighted logistic regression (see the module doc)."""
    tgt = np.asarray(target_scores, dtype=np.float64).reshape(-1)
    non = np.asarray(nontarget_scores, dtype=np.float64).reshape(-1)
    if tgt.size == 0 or non.size == 0:
        raise DataError(f"calibration needs target and non-target trials, got {tgt.size} and {non.size}")
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    # standardise the scores so that Newton starts well-conditioned; map back at the end
    both = np.concatenate([tgt, non])
    centre, spread = float(both.mean()), float(both.std()) or 1.0
    x = (both - centre) / spread
    y = np.concatenate([np.ones(tgt.size), np.zeros(non.size)])
    w = np.where(y == 1, p_target / tgt.size, (1 - p_target) / non.size)
    prior_logit = math.log(p_target / (1 - p_target))
    features = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)

    def objective(th: np.ndarray) -> float:
        z = features @ th + prior_logit
        return float(np.sum(w * np.where(y == 1, _softplus(-z), _softplus(z))))

    current = objective(theta)
    for _ in range(max_iter):
        z = features @ theta + prior_logit
        p = _sigmoid(z)
        grad = features.T @ (w * (p - y))
        hess = (features * (w * p * (1 - p))[:, None]).T @ features + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        # backtracking keeps Newton monotone when the classes separate (scale grows without bound)
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
    scale = theta[0] / spread
    offset = theta[1] - scale * centre
    return Calibration(scale=float(scale), offset=float(offset), p_target=p_target,
                       num_target=int(tgt.size), num_nontarget=int(non.size))
