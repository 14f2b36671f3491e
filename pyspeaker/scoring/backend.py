"""Scoring back-ends: training, storage under ``exp/<name>/backend/`` and trial scoring.

Two back-ends, both reduced to the kernel form ``score(i, j) = E[i] . T[j] + e_bias[i] + t_bias[j]``
(:mod:`pyspeaker.scoring.kernel`):

- ``cosine``: cosine similarity, optionally after subtracting a mean embedding (the training set's);
- ``plda``: Kaldi's x-vector back-end: subtract the training mean -> LDA (``ivector-compute-lda``,
  default 200 dimensions, clipped to #speakers - 1) -> length normalisation to ``sqrt(dim)``
  (``ivector-normalize-length``) -> two-covariance PLDA (``ivector-compute-plda``), scored as the
  log-likelihood ratio of ``ivector-plda-scoring`` (which length-normalises again in PLDA space).

A back-end directory holds ``backend.json`` (what it is, how it was trained, which files), the
parameters as ``.npy``/``.npz``, the same parameters in Kaldi's formats (``mean.vec``,
``transform.mat``, ``plda``) so that Kaldi's binaries can use them, and optionally ``cohort.h5``:
speaker-mean embeddings of the training set, the cohort for score normalisation.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import ConfigError, DataError, require_finite
from pyspeaker.fileio import ensure_space
from pyspeaker.log import get_logger
from pyspeaker.scoring.kernel import distinct_rows, matrix_scores, pair_scores, renumbered, used_rows
from pyspeaker.scoring.lda import Lda, train_lda
from pyspeaker.scoring.plda import PldaModel, train_plda

log = get_logger(__name__)

BACKENDS = ("cosine", "plda")
# rows transformed at a time by the PLDA back-end (bounds its float64 temporaries)
_ROWS_PER_BLOCK = 16384


@dataclass
class Side:
    """One side of the kernel: ``matrix`` rows and an optional per-row ``bias``."""

    matrix: np.ndarray
    bias: np.ndarray | None = None


def unit_rows(x: np.ndarray, mean: np.ndarray | None = None, scale: float = 1.0, dtype=np.float32,
              overwrite: bool = False) -> np.ndarray:
    """Rows of ``x`` minus ``mean``, scaled to length ``scale`` (zero rows stay zero); in ``x`` itself
    when ``overwrite`` and it has that dtype (no second matrix: 10 million rows are gigabytes)."""
    x = np.asarray(x)
    out = x if overwrite and x.dtype == dtype and x.flags.writeable else None
    if mean is not None:
        mean = np.asarray(mean, dtype=dtype).reshape(-1)
        if mean.shape[0] != x.shape[1]:
            raise DataError(f"mean has dimension {mean.shape[0]} but embeddings have {x.shape[1]}")
        out = np.subtract(x, mean, dtype=dtype, out=out)
    elif out is None:
        out = np.array(x, dtype=dtype, copy=True)
    norms = np.sqrt(np.vecdot(out, out))  # no [N, D] temporary, unlike np.linalg.norm
    out *= (scale / np.maximum(norms, np.finfo(dtype).tiny))[:, None]
    return out


class CosineBackend:
    """Cosine similarity of length-normalised embeddings, after subtracting ``mean`` if given."""

    name = "cosine"

    def __init__(self, mean: np.ndarray | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)

    @property
    def label(self) -> str:
        return "cosine+mean" if self.mean is not None else "cosine"

    def sides(self, enroll: np.ndarray, test: np.ndarray, num_utts=None, overwrite: bool = False
              ) -> tuple[Side, Side]:
        """Both sides length-normalised (in the given matrices when ``overwrite``)."""
        e = unit_rows(enroll, self.mean, overwrite=overwrite)
        t = e if test is enroll else unit_rows(test, self.mean, overwrite=overwrite)
        if e.shape[1] != t.shape[1]:
            raise DataError(f"enroll embeddings have dimension {e.shape[1]} but test embeddings have {t.shape[1]}")
        return Side(e), Side(t)


class PldaBackend:
    """Kaldi's back-end: mean -> LDA -> length norm -> PLDA log-likelihood ratio."""

    name = "plda"

    def __init__(self, mean: np.ndarray, lda: Lda | None, plda: PldaModel, normalize_length: bool = True):
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.lda = lda
        self.plda = plda
        self.normalize_length = normalize_length

    @property
    def label(self) -> str:
        return f"lda{self.lda.dim}+plda" if self.lda is not None else "plda"

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        """Mean subtraction, LDA, and length normalisation to ``sqrt(dim)``: PLDA's input space."""
        x = np.asarray(x)
        if x.shape[1] != self.mean.size:
            raise DataError(f"embeddings have dimension {x.shape[1]} but the back-end expects {self.mean.size}")
        y = np.subtract(x, self.mean, dtype=np.float64)
        if self.lda is not None:  # trained on mean-subtracted data, as Kaldi's transform.mat
            y = self.lda.apply(y)
        return unit_rows(y, scale=np.sqrt(y.shape[1]), dtype=np.float64)

    def transform(self, x: np.ndarray, num_utts: np.ndarray | float = 1.0) -> np.ndarray:
        """Rows in PLDA space (``preprocess`` then Kaldi's TransformIvector), a block of rows at a
        time so that the float64 temporaries stay small."""
        out = np.empty((len(x), self.plda.dim))
        counts = np.broadcast_to(np.asarray(num_utts, dtype=np.float64), (len(x),))
        for start in range(0, len(x), _ROWS_PER_BLOCK):
            stop = min(len(x), start + _ROWS_PER_BLOCK)
            out[start:stop] = self.plda.transform_vectors(self.preprocess(x[start:stop]), counts[start:stop],
                                                          self.normalize_length)
        return out

    def sides(self, enroll: np.ndarray, test: np.ndarray, num_utts=None, overwrite: bool = False
              ) -> tuple[Side, Side]:
        """Both sides in PLDA space (new matrices: ``overwrite`` changes nothing)."""
        counts = np.asarray(1.0 if num_utts is None else num_utts, dtype=np.float64)
        t = self.transform(test)
        if counts.ndim == 0 or len(counts) == 0 or np.all(counts == counts.flat[0]):
            n = float(counts.flat[0]) if counts.size else 1.0
            e = t if (test is enroll and n == 1.0) else self.transform(enroll, n)
            e_side = Side(*self.plda.enroll_side(e, n))
            t_side = Side(*self.plda.test_side(t, n))
            return e_side, t_side
        (e_vec, e_bias), (t_vec, t_bias) = self.plda.sides(self.transform(enroll, counts), t, counts)
        return Side(e_vec, e_bias), Side(t_vec, t_bias)


Backend = CosineBackend | PldaBackend


def score_rows(backend: Backend, enroll: np.ndarray, enroll_rows: np.ndarray, test: np.ndarray,
               test_rows: np.ndarray, num_utts: np.ndarray | None = None, overwrite: bool = False) -> np.ndarray:
    """Score of ``enroll[enroll_rows[k]]`` against ``test[test_rows[k]]`` for every k.

    Only the rows the trials use are transformed (cosine: every row when the trials use at least
    half of them, which costs less than copying those). ``num_utts`` gives each enroll row's
    utterance count (PLDA only). ``overwrite``: the matrices may be changed (cosine normalises them
    in place), for callers that need them for nothing else.
    """
    enroll_rows = np.asarray(enroll_rows, dtype=np.int64)
    test_rows = np.asarray(test_rows, dtype=np.int64)
    if test is enroll and num_utts is None:
        # one matrix for both sides (the usual case): transform each used row once
        used = distinct_rows(enroll_rows, len(enroll), test_rows)
        if used.size == len(enroll) or (backend.name == "cosine" and used.size * 2 >= len(enroll)):
            e_side, t_side = backend.sides(enroll, enroll, overwrite=overwrite)
            e_local, t_local = enroll_rows, test_rows
        else:
            e_local, t_local = renumbered(used, len(enroll), enroll_rows, test_rows)
            sub = enroll[used]  # a copy of ours: normalised in place
            e_side, t_side = backend.sides(sub, sub, overwrite=True)
    else:
        e_used, e_local = used_rows(enroll_rows, len(enroll))
        t_used, t_local = used_rows(test_rows, len(test))
        counts = None if num_utts is None else np.asarray(num_utts)[e_used]
        e_side, t_side = backend.sides(enroll[e_used], test[t_used], counts, overwrite=True)
    return pair_scores(e_side.matrix, t_side.matrix, e_local, t_local, e_side.bias, t_side.bias)


# --- training ------------------------------------------------------------------------------------

def train_backend(kind: str, emb: np.ndarray, labels: list[str] | None, lda_dim: int | None = 200,
                  num_em_iters: int = 10) -> tuple[Backend, dict]:
    """Train a back-end on training embeddings; returns it and a description for backend.json."""
    emb = np.asarray(emb, dtype=np.float32)
    mean = emb.astype(np.float64).mean(axis=0)
    if kind == "cosine":
        return CosineBackend(mean.astype(np.float32)), {"mean_subtraction": True}
    if kind != "plda":
        raise ConfigError(f"unknown back-end '{kind}' (expected one of {', '.join(BACKENDS)})")
    if labels is None:
        raise ConfigError("the plda back-end needs speaker labels (--utt2spk)")
    centred = emb.astype(np.float64) - mean
    lda = None
    if lda_dim:
        lda = train_lda(centred, labels, lda_dim)
        projected = lda.apply(centred)
    else:
        projected = centred
    normed = unit_rows(projected, scale=np.sqrt(projected.shape[1]), dtype=np.float64)
    trained = train_plda(normed, labels, num_em_iters=num_em_iters)
    backend = PldaBackend(mean, lda, trained.model)
    info = {"mean_subtraction": True, "lda_dim": None if lda is None else lda.dim,
            "lda_requested_dim": lda_dim or None, "length_norm": "sqrt(dim) after LDA, then Kaldi's PLDA length norm",
            "num_em_iters": num_em_iters, "psi_top": [float(v) for v in trained.model.psi[:5]]}
    if lda is not None:
        info["lda_eigenvalues_top"] = [float(v) for v in lda.eigenvalues[:5]]
    return backend, info


# --- storage -------------------------------------------------------------------------------------

def _require_finite_backend(backend: Backend, source) -> None:
    """Statistics of a degenerate training set (e.g. one embedding per speaker, or collinear
    embeddings) can come out NaN / inf: refuse them rather than store a back-end scoring NaN."""
    parts = {"mean": backend.mean}
    if isinstance(backend, PldaBackend):
        parts.update(lda=None if backend.lda is None else backend.lda.kaldi_matrix(), plda_mean=backend.plda.mean,
                     plda_transform=backend.plda.transform, plda_psi=backend.plda.psi)
    for name, values in parts.items():
        if values is not None:
            require_finite(values, f"back-end statistics ({name}) trained on these embeddings", path=source)


def save_backend(backend: Backend, directory: Path, description: dict,
                 cohort: tuple[list[str], np.ndarray] | None = None) -> None:
    """Write the back-end's files into ``directory`` (an existing, usually temporary, directory)."""
    import kaldiio

    directory = Path(directory)
    _require_finite_backend(backend, description.get("embeddings"))
    files: dict[str, str] = {}
    if backend.mean is not None:
        np.save(directory / "mean.npy", backend.mean.astype(np.float32))
        kaldiio.save_mat(str(directory / "mean.vec"), backend.mean.astype(np.float32))
        files.update(mean="mean.npy", kaldi_mean="mean.vec")
    if isinstance(backend, PldaBackend):
        if backend.lda is not None:
            np.save(directory / "lda.npy", backend.lda.kaldi_matrix())
            kaldiio.save_mat(str(directory / "transform.mat"), backend.lda.kaldi_matrix().astype(np.float32))
            files.update(lda="lda.npy", kaldi_lda="transform.mat")
        p = backend.plda
        np.savez(directory / "plda.npz", mean=p.mean, transform=p.transform, psi=p.psi)
        write_kaldi_plda(directory / "plda", p)
        files.update(plda="plda.npz", kaldi_plda="plda")
    meta = {"backend": backend.name, "label": backend.label, **description, "files": files}
    if cohort is not None:
        import h5py

        names, matrix = cohort
        ensure_space(directory, np.asarray(matrix).nbytes)
        with h5py.File(directory / "cohort.h5", "w") as f:
            f.create_dataset("ids", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("embeddings", data=np.asarray(matrix, dtype=np.float32))
        meta["files"]["cohort"] = "cohort.h5"
        meta["cohort"] = {"file": "cohort.h5", "num_speakers": len(names),
                          "what": "speaker-mean embeddings of the training set"}
    (directory / "backend.json").write_text(json.dumps(meta, indent=2) + "\n")


def read_backend_json(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "backend.json"
    if not path.is_file():
        raise DataError("no backend.json in this directory (run 'pyspeaker train-backend' first)", path=directory)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None


def load_backend(directory: str | os.PathLike) -> tuple[Backend, dict]:
    """The back-end stored in ``directory`` and its backend.json."""
    directory = Path(directory)
    meta = read_backend_json(directory)
    files = meta.get("files", {})
    kind = meta.get("backend")

    def need(key: str) -> Path:
        if key not in files or not (directory / files[key]).is_file():
            raise DataError(f"backend.json names no readable '{key}' file", path=directory / "backend.json")
        return directory / files[key]

    if kind == "cosine":
        return CosineBackend(np.load(need("mean")) if "mean" in files else None), meta
    if kind == "plda":
        mean = np.load(need("mean")).astype(np.float64)
        lda = Lda.from_kaldi_matrix(np.load(need("lda"))) if "lda" in files else None
        with np.load(need("plda")) as z:
            plda = PldaModel(mean=z["mean"], transform=z["transform"], psi=z["psi"])
        return PldaBackend(mean, lda, plda), meta
    raise DataError(f"unknown back-end '{kind}' (expected one of {', '.join(BACKENDS)})",
                    path=directory / "backend.json")


def cohort_path(directory: str | os.PathLike, meta: dict | None = None) -> Path | None:
    meta = read_backend_json(directory) if meta is None else meta
    name = meta.get("files", {}).get("cohort")
    return None if name is None else Path(directory) / name


# --- Kaldi's binary PLDA -------------------------------------------------------------------------

def _kaldi_int(value: int) -> bytes:
    return b"\x04" + struct.pack("<i", value)


def write_kaldi_plda(path: str | os.PathLike, model: PldaModel) -> None:
    """Kaldi's binary ``Plda`` object (``<Plda> DV mean DM transform DV psi </Plda>``), readable by
    ``ivector-plda-scoring`` and ``ivector-copy-plda``."""
    d = model.dim
    data = (b"\x00B<Plda> "
            + b"DV " + _kaldi_int(d) + np.asarray(model.mean, dtype="<f8").tobytes()
            + b"DM " + _kaldi_int(d) + _kaldi_int(d) + np.asarray(model.transform, dtype="<f8").tobytes()
            + b"DV " + _kaldi_int(d) + np.asarray(model.psi, dtype="<f8").tobytes()
            + b"</Plda> ")
    Path(path).write_bytes(data)


def read_kaldi_plda(path: str | os.PathLike) -> PldaModel:
    """Read a binary Kaldi ``Plda`` (as written by ``ivector-compute-plda``)."""
    data = Path(path).read_bytes()
    pos = 0

    def expect(token: bytes) -> None:
        nonlocal pos
        if data[pos:pos + len(token)] != token:
            raise DataError(f"not a binary Kaldi PLDA: expected {token!r} at byte {pos}", path=path)
        pos += len(token)

    def integer() -> int:
        nonlocal pos
        expect(b"\x04")
        (value,) = struct.unpack("<i", data[pos:pos + 4])
        pos += 4
        return value

    def array(kind: bytes) -> np.ndarray:
        nonlocal pos
        fmt = data[pos:pos + 3]
        if fmt not in (b"D" + kind + b" ", b"F" + kind + b" "):
            raise DataError(f"not a binary Kaldi PLDA: expected a {kind.decode()} at byte {pos}", path=path)
        pos += 3
        shape = (integer(),) if kind == b"V" else (integer(), integer())
        dtype = "<f8" if fmt[0:1] == b"D" else "<f4"
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out = np.frombuffer(data[pos:pos + size], dtype=dtype).reshape(shape).astype(np.float64)
        pos += size
        return out

    expect(b"\x00B<Plda> ")
    mean, transform, psi = array(b"V"), array(b"M"), array(b"V")
    expect(b"</Plda> ")
    return PldaModel(mean=mean, transform=transform, psi=psi)


__all__ = ["BACKENDS", "Backend", "CosineBackend", "PldaBackend", "Side", "cohort_path", "load_backend",
           "matrix_scores", "read_backend_json", "read_kaldi_plda", "save_backend", "score_rows", "train_backend",
           "unit_rows", "write_kaldi_plda"]
