"""Linear discriminant analysis as Kaldi's ``ivector-compute-lda`` computes it.

With ``m`` the mean of all embeddings, ``W`` the within-class and ``B`` the between-class covariance
(both about ``m``, each speaker weighted by its number of utterances, divided by the utterance
count), LDA first finds ``T`` with ``T W T' = I`` (eigenvalues of ``W`` floored at
``covariance_floor`` times the largest), then the eigenvectors ``U`` of ``T B T'``, largest
eigenvalue first, and keeps ``U[:, :dim]' T``. The result maps ``x`` to ``A (x - m)``; Kaldi stores
it as a ``dim x (D+1)`` matrix whose last column is the offset ``-A m`` (``transform.mat``, applied by
``transform-vec``). The projected data has identity within-class covariance and a diagonal
between-class covariance holding the kept eigenvalues.

At most ``#speakers - 1`` directions carry between-class information; a larger ``dim`` is clipped
to that with a warning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)


@dataclass
class Lda:
    """``x -> transform @ x + offset`` (float64)."""

    transform: np.ndarray  # [out_dim, in_dim]
    offset: np.ndarray  # [out_dim]
    eigenvalues: np.ndarray  # between-class variances of the kept directions (descending)

    @property
    def dim(self) -> int:
        return int(self.transform.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.transform.T + self.offset

    def kaldi_matrix(self) -> np.ndarray:
        """``[A | -A m]``, Kaldi's affine ``transform.mat`` layout."""
        return np.hstack([self.transform, self.offset[:, None]])

    @classmethod
    def from_kaldi_matrix(cls, m: np.ndarray) -> "Lda":
        m = np.asarray(m, dtype=np.float64)
        return cls(transform=m[:, :-1].copy(), offset=m[:, -1].copy(), eigenvalues=np.full(m.shape[0], np.nan))


def class_index(labels: list[str] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer class of each label (classes in order of first appearance) and the class names."""
    names = list(dict.fromkeys(labels))
    code = {s: i for i, s in enumerate(names)}
    return np.fromiter((code[s] for s in labels), dtype=np.int64, count=len(labels)), names


def within_between(x: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, within, between, counts)`` as Kaldi's CovarianceStats: sums over utterances divided by
    the number of utterances, about the global mean."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    xc = x - mean
    counts = np.bincount(cls)
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, cls, xc)
    class_means = sums / np.maximum(counts, 1)[:, None]
    total = xc.T @ xc
    between = (class_means * counts[:, None]).T @ class_means
    n = len(x)
    return mean, (total - between) / n, between / n, counts


def normalizing_transform(covar: np.ndarray, floor: float) -> np.ndarray:
    """``T`` with ``T covar T' = I`` (Kaldi's ComputeNormalizingTransform: eigenvalues floored at
    ``floor`` times the largest)."""
    s, u = np.linalg.eigh(covar)
    s, u = s[::-1], u[:, ::-1]
    floor_value = floor * s[0]
    num_floored = int(np.sum(s < floor_value))
    if num_floored:
        log.warning("floored %d eigenvalues of the covariance to %g", num_floored, floor_value)
    s = np.maximum(s, floor_value)
    return (u / np.sqrt(s)).T


def train_lda(x: np.ndarray, labels: list[str] | np.ndarray, dim: int, total_covariance_factor: float = 0.0,
              covariance_floor: float = 1e-6) -> Lda:
    """Kaldi's ``ivector-compute-lda --dim=DIM`` on embeddings ``x`` [N, D] with speaker ``labels``."""
    x = np.asarray(x, dtype=np.float64)
    cls, names = class_index(list(labels))
    num_spk, (n, d) = len(names), x.shape
    if num_spk < 2:
        raise DataError(f"LDA needs at least 2 speakers, got {num_spk}")
    if n <= num_spk:
        raise DataError(f"LDA needs more utterances than speakers (got {n} utterances of {num_spk} speakers)")
    if dim < 1:
        raise ValueError(f"LDA dimension must be positive, got {dim}")
    limit = min(d, num_spk - 1)
    if dim > limit:
        log.warning("LDA dimension %d clipped to %d (%s)", dim, limit,
                    f"embedding dimension {d}" if limit == d else f"{num_spk} speakers - 1")
        dim = limit
    mean, within, between, _ = within_between(x, cls)
    to_normalize = total_covariance_factor * (within + between) + (1.0 - total_covariance_factor) * within
    t = normalizing_transform(to_normalize, covariance_floor)
    s, u = np.linalg.eigh(t @ between @ t.T)
    order = np.argsort(-s, kind="stable")
    s, u = s[order], u[:, order]
    transform = u[:, :dim].T @ t
    return Lda(transform=transform, offset=-transform @ mean, eigenvalues=s[:dim])
