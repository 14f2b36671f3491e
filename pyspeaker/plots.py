"""Result plots: DET curves and score histograms, written as PNG with matplotlib's Agg backend.

The DET plot uses normal-deviate (probit) axes, as in NIST evaluations, so that Gaussian score
distributions give straight lines; the ticks are labelled in percent. Each system's EER point and
its minDCF operating point(s) are marked. Files are written atomically.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from pyspeaker.metrics import eer_from_rates, error_rates, min_dcf_from_rates

# candidate axis ticks (fractions); the axis range is snapped to these
_DET_TICKS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
              0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
# fewer ticks for wide ranges, so that labels near the ends do not collide
_DET_TICKS_SPARSE = (1e-4, 1e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
_DCF_MARKERS = ("s", "^", "D", "v", "P", "X")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str | os.PathLike) -> None:
    from pyspeaker.fileio import atomic_file

    with atomic_file(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _percent(x: float) -> str:
    return f"{100 * x:g}"


def _det_range(points: list[float]) -> tuple[float, float]:
    """Axis range (fractions) showing the marked points with some margin, snapped to major ticks.

    It always spans at least 1 % .. 40 %.
    """
    inside = [p for p in points if 0 < p < 1]
    lo = min([1e-2] + [0.5 * p for p in inside])
    lo = max(t for t in _DET_TICKS_SPARSE if t <= max(lo, _DET_TICKS_SPARSE[0]))
    hi = min(max([0.4] + [1.0 - 0.5 * (1.0 - p) for p in inside]), _DET_TICKS_SPARSE[-1])
    hi = min(t for t in _DET_TICKS_SPARSE if t >= hi)
    return lo, hi


def _det_ticks(lo: float, hi: float) -> list[float]:
    ticks = [t for t in _DET_TICKS if lo <= t <= hi]
    return ticks if len(ticks) <= 12 else [t for t in _DET_TICKS_SPARSE if lo <= t <= hi]


def _thin(x: np.ndarray, y: np.ndarray, step: float = 2e-3) -> tuple[np.ndarray, np.ndarray]:
    """Drop points of a monotone curve that move less than ``step`` (probit units, invisible) in both
    coordinates, keeping the corners: a million trials then draw in well under a second."""
    qx, qy = np.floor(x / step), np.floor(y / step)
    keep = np.ones(x.size, dtype=bool)
    keep[1:-1] = (qx[1:-1] != qx[:-2]) | (qy[1:-1] != qy[:-2]) | (qx[2:] != qx[1:-1]) | (qy[2:] != qy[1:-1])
    return x[keep], y[keep]


def plot_det(systems: Mapping[str, tuple[Sequence[float], Sequence[float]]], out_png: str | os.PathLike,
             p_targets: Sequence[float] = (0.01, 0.05), c_miss: float = 1.0, c_fa: float = 1.0,
             title: str | None = None) -> None:
    """DET curves of ``{name: (target_scores, nontarget_scores)}`` with EER and minDCF points marked."""
    from scipy.stats import norm

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    marked: list[float] = []
    markers: list[tuple[float, float, dict]] = []
    handles: list = []
    eps = 1e-7  # probit(0) is -inf; clipped points sit just beyond the axis edge
    probit = lambda p: norm.ppf(np.clip(p, eps, 1 - eps))  # noqa: E731
    for k, (name, (tgt, non)) in enumerate(systems.items()):
        color = f"C{k % 10}"
        thresholds, p_miss, p_fa = error_rates(tgt, non)
        eer, _ = eer_from_rates(thresholds, p_miss, p_fa)
        x, y = _thin(probit(p_fa), probit(p_miss))
        handles += ax.plot(x, y, color=color, lw=1.5, label=f"{name}: EER {100 * eer:.2f} %")
        handles.append(None)  # filled with this system's marker lines below, to keep the legend grouped
        markers.append((eer, eer, dict(marker="o", color=color, ms=7, mfc="none", mew=1.5)))
        marked.append(eer)
        for j, p in enumerate(p_targets):
            dcf, thr = min_dcf_from_rates(thresholds, p_miss, p_fa, p, c_miss, c_fa)
            i = int(np.searchsorted(thresholds, thr))  # the operating point of that threshold
            markers.append((p_fa[i], p_miss[i], dict(marker=_DCF_MARKERS[j % len(_DCF_MARKERS)], color=color,
                                                     ms=6, label=f"  minDCF(p_target={p:g}) {dcf:.4f}")))
            marked += [p_fa[i], p_miss[i]]
    lo, hi = _det_range(marked)
    ticks = _det_ticks(lo, hi)
    drawn = []
    for x, y, style in markers:  # a point at 0 % (no probit value) is drawn on the frame
        drawn += ax.plot(probit(np.clip(x, lo, hi)), probit(np.clip(y, lo, hi)), ls="none", clip_on=False, **style)
    per_system = iter([[h for h in drawn[k:k + 1 + len(p_targets)] if h.get_label()[0] != "_"]
                       for k in range(0, len(drawn), 1 + len(p_targets))])
    handles = [h for entry in handles for h in ([entry] if entry is not None else next(per_system))]
    ax.plot(probit([lo, hi]), probit([lo, hi]), ":", color="0.6", lw=1)  # EER line
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks))
        axis.set_ticklabels([_percent(t) for t in ticks])
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_aspect("equal")
    ax.grid(True, color="0.85", lw=0.6)
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_title(title or "DET curve (o = EER)")
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    _save(fig, out_png)
    plt.close(fig)


def plot_score_histogram(target_scores: Sequence[float], nontarget_scores: Sequence[float],
                         out_png: str | os.PathLike, thresholds: Mapping[str, float] | None = None,
                         title: str | None = None, bins: int | None = None) -> None:
    """Target and non-target score densities on shared bins, with vertical threshold lines."""
    plt = _pyplot()
    tgt = np.asarray(target_scores, dtype=np.float64).reshape(-1)
    non = np.asarray(nontarget_scores, dtype=np.float64).reshape(-1)
    both = np.concatenate([tgt, non])
    if bins is None:
        bins = int(np.clip(np.sqrt(both.size), 10, 100))
    lo, hi = float(both.min()), float(both.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    # densities, since non-targets usually outnumber targets by 10-1000x
    ax.hist(non, bins=edges, density=True, histtype="stepfilled", alpha=0.45, color="C0",
            label=f"non-target ({non.size})")
    ax.hist(tgt, bins=edges, density=True, histtype="stepfilled", alpha=0.45, color="C3",
            label=f"target ({tgt.size})")
    styles = ("--", "-.", ":", (0, (5, 1, 1, 1)))
    colors = ("k", "C2", "C4", "C1", "C5", "C6", "C8")  # with the styles: distinct up to 28 lines
    for k, (name, value) in enumerate((thresholds or {}).items()):
        if value is None or not np.isfinite(value):
            continue
        ax.axvline(value, color=colors[k % len(colors)], lw=1.2, ls=styles[k % len(styles)],
                   label=f"{name}: {value:.4f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title or "Score distributions")
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8)
    _save(fig, out_png)
    plt.close(fig)
