"""Two-covariance PLDA as Kaldi's ``ivector-compute-plda`` trains it and ``ivector-plda-scoring`` scores.

Model: an embedding is ``x = m + y + e`` with the speaker variable ``y ~ N(0, B)`` (between-class)
and the residual ``e ~ N(0, W)`` (within-class). Training is Kaldi's EM (10 iterations from
``B = W = I``); the trained model is stored as Kaldi does, in the basis where ``W`` becomes ``I`` and
``B`` becomes ``diag(psi)``: ``u = transform (x - m)``.

Scoring a test vector ``t`` against an enrollment ``u`` averaged over ``n`` utterances (both
transformed, and by default length-normalised so that ``sum u_i^2 / (psi_i + 1/n) = dim``) gives the
log-likelihood ratio of "same speaker" against "different speakers"::

    LLR = log N(t; a u, diag(1 + psi/(n psi + 1))) - log N(t; 0, diag(1 + psi)),  a = n psi / (n psi + 1)

which expands into ``<u', t> + q(u) + r(t)`` with per-side vectors and constants, so that a
million trials cost one vectorised dot product each (:func:`PldaModel.sides`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.log import get_logger
from pyspeaker.scoring.lda import class_index

log = get_logger(__name__)


@dataclass
class PldaModel:
    """Kaldi's ``Plda`` object: ``mean``, ``transform`` (W -> I, B -> diag(psi)) and ``psi`` (descending)."""

    mean: np.ndarray
    transform: np.ndarray
    psi: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    @property
    def offset(self) -> np.ndarray:
        return -self.transform @ self.mean

    def transform_vectors(self, x: np.ndarray, num_utts: np.ndarray | float = 1.0, normalize_length: bool = True,
                          simple_length_norm: bool = False) -> np.ndarray:
        """Kaldi's ``Plda::TransformIvector`` for each row of ``x`` (float64 result).

        With ``normalize_length`` (Kaldi's default) each row is scaled so that
        ``sum u_i^2 / (psi_i + 1/n) = dim`` (or to length ``sqrt(dim)`` with ``simple_length_norm``).
        """
        u = np.asarray(x, dtype=np.float64) @ self.transform.T + self.offset
        if not normalize_length:
            return u
        if simple_length_norm:
            norm = np.linalg.norm(u, axis=1)
            factor = np.sqrt(self.dim) / np.maximum(norm, np.finfo(np.float64).tiny)
        else:
            n = np.broadcast_to(np.asarray(num_utts, dtype=np.float64), (len(u),))
            inv_covar = 1.0 / (self.psi[None, :] + 1.0 / n[:, None])
            dot = np.einsum("ij,ij->i", u * u, inv_covar)
            factor = np.sqrt(self.dim / np.maximum(dot, np.finfo(np.float64).tiny))
        return u * factor[:, None]

    def llr(self, enroll: np.ndarray, test: np.ndarray, num_utts: float = 1.0) -> np.ndarray:
        """Reference form of Kaldi's ``Plda::LogLikelihoodRatio`` for aligned rows of already
        transformed ``enroll`` and ``test`` (the slow, literal formula; used by the tests)."""
        psi, n = self.psi, float(num_utts)
        mean = enroll * (n * psi / (n * psi + 1.0))
        var_given = 1.0 + psi / (n * psi + 1.0)
        var_without = 1.0 + psi
        given = -0.5 * (np.sum(np.log(var_given)) + np.log(2 * np.pi) * self.dim
                        + np.sum((test - mean) ** 2 / var_given, axis=1))
        without = -0.5 * (np.sum(np.log(var_without)) + np.log(2 * np.pi) * self.dim
                          + np.sum(test ** 2 / var_without, axis=1))
        return given - without

    def _uniform_terms(self, n: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Per-dimension constants of the LLR for enrollments of ``n`` utterances."""
        psi = self.psi
        a = n * psi / (n * psi + 1.0)
        var_given = 1.0 + psi / (n * psi + 1.0)
        var_without = 1.0 + psi
        const = 0.5 * float(np.sum(np.log(var_without / var_given)))
        return a / var_given, a * a / var_given, const, 0.5 * (1.0 / var_without - 1.0 / var_given)

    def enroll_side(self, enroll: np.ndarray, n: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(E, e_bias)`` of :meth:`sides` for enroll rows that all average ``n`` utterances."""
        scale, quad, const, _ = self._uniform_terms(n)
        enroll = np.asarray(enroll, dtype=np.float64)
        return enroll * scale, -0.5 * (enroll * enroll) @ quad + const

    def test_side(self, test: np.ndarray, n: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(T, t_bias)`` of :meth:`sides` against enrollments of ``n`` utterances."""
        *_, test_quad = self._uniform_terms(n)
        test = np.asarray(test, dtype=np.float64)
        return test, (test * test) @ test_quad

    def sides(self, enroll: np.ndarray, test: np.ndarray, num_utts: np.ndarray | float = 1.0
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``((E, e_bias), (T, t_bias))`` with ``LLR(i, j) = E[i] . T[j] + e_bias[i] + t_bias[j]``.

        ``enroll`` / ``test`` are transformed rows; ``num_utts`` is the enrollment count of each enroll
        row (scalar or per row). With one count for all rows the sides have ``dim`` columns; with
        several, the quadratic test term depends on the count and both sides get ``2 dim`` columns
        (``T = [t, t^2]``).
        """
        psi = self.psi
        enroll = np.asarray(enroll, dtype=np.float64)
        test = np.asarray(test, dtype=np.float64)
        counts = np.asarray(num_utts, dtype=np.float64)
        var_without = 1.0 + psi
        if counts.ndim == 0 or len(counts) == 0 or np.all(counts == counts[0]):
            # one count for every enroll row: per-dimension constants, a few passes over the rows
            n = float(counts) if counts.ndim == 0 else (float(counts[0]) if len(counts) else 1.0)
            return self.enroll_side(enroll, n), self.test_side(test, n)
        n = np.broadcast_to(counts, (len(enroll),))[:, None]
        a = n * psi / (n * psi + 1.0)
        var_given = 1.0 + psi / (n * psi + 1.0)
        mean = a * enroll
        e_vec = mean / var_given
        e_bias = -0.5 * np.sum(mean * mean / var_given, axis=1) + 0.5 * np.sum(np.log(var_without / var_given), axis=1)
        test_quad = 0.5 * (1.0 / var_without - 1.0 / var_given)  # [n_enroll, dim]
        return (np.hstack([e_vec, test_quad]), e_bias), (np.hstack([test, test * test]), np.zeros(len(test)))


@dataclass
class PldaTraining:
    """What EM estimated, in the input space: ``within`` (W) and ``between`` (B) covariances."""

    model: PldaModel
    within: np.ndarray
    between: np.ndarray
    num_speakers: int
    num_utts: int


def train_plda(x: np.ndarray, labels: list[str] | np.ndarray, num_em_iters: int = 10) -> PldaTraining:
    """Kaldi's ``ivector-compute-plda`` (PldaEstimator, weight 1 per speaker) on rows ``x`` [N, D]."""
    x = np.asarray(x, dtype=np.float64)
    cls, names = class_index(list(labels))
    num_spk, (num_utts, dim) = len(names), x.shape
    counts = np.bincount(cls, minlength=num_spk)
    if num_spk < 2:
        raise DataError(f"PLDA needs at least 2 speakers, got {num_spk}")
    if num_utts <= num_spk:
        raise DataError(f"PLDA needs speakers with several utterances (got {num_utts} utterances of {num_spk} speakers)")
    sums = np.zeros((num_spk, dim))
    np.add.at(sums, cls, x)
    class_means = sums / counts[:, None]
    # within-class scatter about each speaker's mean (Kaldi's offset_scatter_)
    offset_scatter = x.T @ x - (class_means * counts[:, None]).T @ class_means
    global_mean = class_means.mean(axis=0)  # Kaldi: mean of the speaker means, one weight per speaker
    centred = class_means - global_mean
    within, between = np.eye(dim), np.eye(dim)
    groups = [(int(n), np.flatnonzero(counts == n)) for n in np.unique(counts)]
    for it in range(num_em_iters):
        within_inv = np.linalg.inv(within)
        between_inv = np.linalg.inv(between)
        within_stats = offset_scatter.copy()
        between_stats = np.zeros((dim, dim))
        for n, members in groups:
            mixed = np.linalg.inv(between_inv + n * within_inv)  # posterior covariance of y given n examples
            mixed = 0.5 * (mixed + mixed.T)
            m = centred[members]
            w = m @ (n * within_inv) @ mixed  # posterior means of y (rows)
            k = len(members)
            between_stats += k * mixed + w.T @ w
            d = m - w
            within_stats += n * k * mixed + n * (d.T @ d)
        # Kaldi's counts: each speaker adds 1 to both; the offset scatter adds (n - 1) per speaker
        within = within_stats / num_utts
        between = between_stats / num_spk
        within, between = 0.5 * (within + within.T), 0.5 * (between + between.T)
        log.debug("PLDA EM iteration %d/%d: trace(W) %.4g, trace(B) %.4g", it + 1, num_em_iters,
                  np.trace(within), np.trace(between))
    return PldaTraining(model=_kaldi_output(global_mean, within, between), within=within, between=between,
                        num_speakers=num_spk, num_utts=num_utts)


def _kaldi_output(mean: np.ndarray, within: np.ndarray, between: np.ndarray) -> PldaModel:
    """Kaldi's PldaEstimator::GetOutput: ``transform = U' C^-1`` with ``W = C C'`` and ``U`` the
    eigenvectors of ``C^-1 B C^-T`` (eigenvalues ``psi``, descending)."""
    c_inv = np.linalg.inv(np.linalg.cholesky(within))
    s, u = np.linalg.eigh(c_inv @ between @ c_inv.T)
    order = np.argsort(-s, kind="stable")
    s, u = s[order], u[:, order]
    if s[-1] < 0:
        log.warning("PLDA between-class covariance has %d negative eigenvalues; set to 0", int(np.sum(s < 0)))
        s = np.maximum(s, 0.0)
    return PldaModel(mean=mean, transform=u.T @ c_inv, psi=s)
