"""Embedding files: ``xvector.h5`` (ids + matrix) and Kaldi ``xvector.scp/ark``.

Both hold the same vectors; the HDF5 file is what pyspeaker reads back (one read for the whole
matrix), the ark/scp pair is for Kaldi back-ends and kaldiio users.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError, require_finite
from pyspeaker.fileio import atomic_dir, ensure_space
from pyspeaker.store.features import open_h5


def write_embeddings(out_dir: str | os.PathLike, ids: list[str], matrix: np.ndarray, ark: bool = True,
                     utt2spk: dict[str, str] | None = None, crops: np.ndarray | None = None) -> None:
    """Write ``xvector.h5`` (and ``xvector.scp/ark``) as a complete directory, atomically.

    With ``utt2spk`` also the speaker means as Kaldi's ``ivector-mean`` writes them:
    ``spk_xvector.scp/ark`` (binary) and ``num_utts.ark`` (text: ``<spk> <count>``).
    With ``crops`` [N, K, D] (voxceleb_trainer's evaluation mode) also the dataset ``crops`` in the HDF5.
    """
    import h5py

    from pyspeaker.store.kaldi_scp import write_ark_scp
    from pyspeaker.store.kaldi_vectors import write_num_utts

    out_dir = Path(out_dir)
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"embedding matrix {matrix.shape} does not match {len(ids)} ids")
    # A network that diverged gives NaN embeddings: refuse before replacing earlier ones.
    require_finite(matrix, "embedding", path=out_dir, ids=ids)
    order = np.argsort(np.array(ids, dtype=object), kind="stable") if ids != sorted(ids) else None
    if order is not None:
        ids, matrix = [ids[i] for i in order], matrix[order]
        crops = None if crops is None else crops[order]
    with atomic_dir(out_dir) as tmp:
        ensure_space(tmp, 3 * matrix.nbytes + (0 if crops is None else np.asarray(crops).nbytes))
        with h5py.File(tmp / "xvector.h5", "w") as f:
            f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("embeddings", data=matrix)
            if crops is not None:
                f.create_dataset("crops", data=np.asarray(crops, dtype=np.float32))
        if ark:
            write_ark_scp(tmp, out_dir, "xvector", ((u, matrix[i]) for i, u in enumerate(ids)))
        if utt2spk is not None:
            speakers, means, counts = speaker_means(ids, matrix, utt2spk)
            write_ark_scp(tmp, out_dir, "spk_xvector", zip(speakers, means))
            write_num_utts(tmp / "num_utts.ark", dict(zip(speakers, counts)))
            # Back-ends and score normalisation find the speakers next to the embeddings.
            (tmp / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in ids))


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read embeddings from a directory (xvector.h5 or xvector.scp) or an .h5/.scp/.ark file."""
    path = Path(path)
    if path.is_dir():
        for name in ("xvector.h5", "xvector.scp", "spk_xvector.scp"):
            if (path / name).is_file():
                return load_embeddings(path / name)
        raise DataError("no xvector.h5 or xvector.scp in this directory", path=path)
    if not path.is_file():
        raise DataError("embeddings file not found", path=path)
    if path.suffix in (".h5", ".hdf5"):
        with open_h5(path, "embeddings file") as f:
            ids = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]]
            matrix = f["embeddings"][()].astype(np.float32, copy=False)
    else:
        ids, matrix = _load_kaldi_vectors(path)
    require_finite(matrix, "embedding", path=path, ids=ids)
    return ids, matrix


def _load_kaldi_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    import kaldiio

    try:
        # load_scp gives a lazy mapping (its arks are opened on access), load_ark a generator of pairs
        table = kaldiio.load_scp(str(path)) if path.suffix == ".scp" else None
        items = list(table.items()) if table is not None else list(kaldiio.load_ark(str(path)))
    except FileNotFoundError as e:
        raise DataError(f"the ark file {e.filename} it points to is missing", path=path) from None
    except Exception as e:  # kaldiio raises many kinds for a foreign or truncated file
        raise DataError(f"cannot read Kaldi vectors: {type(e).__name__}: {e}", path=path) from None
    if not items:
        raise DataError("no embeddings in this file", path=path)
    ids = [k for k, _ in items]
    rows = [np.asarray(v, dtype=np.float32).reshape(-1) for _, v in items]
    dims = {len(r) for r in rows}
    if len(dims) > 1:
        raise DataError(f"vectors of different dimensions ({sorted(dims)}) in one table", path=path)
    return ids, np.stack(rows)


def speaker_means(ids: list[str], matrix: np.ndarray, utt2spk: dict[str, str]
                  ) -> tuple[list[str], np.ndarray, list[int]]:
    """Kaldi ``ivector-mean``: the mean embedding of each speaker (float64 sums, float32 means) with
    its utterance count, speakers sorted. The one speaker-mean function: the spk_xvector files and
    the back-end's cohort (``pyspeaker train-backend``) both come from it."""
    missing = [u for u in ids if u not in utt2spk]
    if missing:
        raise DataError(f"{len(missing)} embeddings have no speaker in utt2spk (first: {missing[0]})")
    spk_of = np.array([utt2spk[u] for u in ids])
    speakers, inverse, counts = np.unique(spk_of, return_inverse=True, return_counts=True)
    sums = np.zeros((len(speakers), matrix.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, matrix)
    return speakers.tolist(), (sums / counts[:, None]).astype(np.float32), counts.tolist()



def load_crop_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The per-crop embeddings [N, K, D] of an embeddings dir or xvector.h5 made with --eval-frames."""
    path = Path(path)
    h5 = path / "xvector.h5" if path.is_dir() else path
    if not h5.is_file():
        raise DataError("no xvector.h5 here", path=path)
    with open_h5(h5, "embeddings file") as f:
        if "crops" not in f:
            raise DataError("these embeddings have no per-crop vectors: extract them with --eval-frames", path=h5)
        ids = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]]
        return ids, f["crops"][()]
