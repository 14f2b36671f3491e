"""Kaldi vector tables: ``xvector.scp/ark``, ``spk_xvector.scp/ark`` and ``num_utts.ark``.

What Kaldi's x-vector recipes make with ``ivector-mean ark:spk2utt scp:xvector.scp
ark,scp:spk_xvector.ark,spk_xvector.scp ark,t:num_utts.ark``: per-speaker mean embeddings as
binary float vectors (``\\0BFV \\4<dim><floats>``) and the number of utterances averaged for each
speaker, the enrollment counts that ``ivector-plda-scoring --num-utts`` takes. ``num_utts.ark`` is
written as text by default, as Kaldi writes it, which ``pyspeaker score --num-utts`` reads; each
count is right-aligned in 4 columns (``spk1    3``), which Kaldi reads the same, because kaldiio's
``load_ark`` misreads a text entry shorter than 5 bytes at the end of a file. ``binary=True``
writes Kaldi's binary int32 table (``<spk> \\0B\\4<int32>``), which Kaldi reads too (kaldiio
does not: it takes ``\\4`` for an int32 vector). ``read_num_utts`` reads both.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file
from pyspeaker.log import get_logger

log = get_logger(__name__)


def write_vectors(out_dir: str | os.PathLike, stem: str, ids: list[str], matrix: np.ndarray) -> None:
    """``<stem>.ark`` (binary float vectors) + ``<stem>.scp`` in ``out_dir``, rows in id order.

    Both files appear complete or not at all (written aside, then renamed: ark first, so the scp
    never points into a missing ark); scp offsets name the ark's absolute final path.
    """
    from pyspeaker.store.kaldi_scp import write_ark_scp

    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(f"vector matrix {matrix.shape} does not match {len(ids)} ids")
    bad = next((i for i in ids if not i or any(c.isspace() for c in i)), None)
    if bad is not None:
        raise DataError(f"invalid id {bad!r}: ids must be non-empty and contain no whitespace",
                        path=Path(out_dir) / f"{stem}.scp")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=out))
    try:
        write_ark_scp(tmp, out, stem, ((u, matrix[i]) for i, u in enumerate(ids)))
        os.replace(tmp / f"{stem}.ark", out / f"{stem}.ark")
        os.replace(tmp / f"{stem}.scp", out / f"{stem}.scp")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_num_utts(path: str | os.PathLike, counts: Mapping[str, int], binary: bool = False) -> None:
    """Kaldi's ``num_utts.ark``: one ``<speaker> <count>`` entry per speaker, sorted."""
    keys = sorted(counts)
    with atomic_file(path) as tmp:
        if binary:
            with open(tmp, "wb") as f:
                for k in keys:
                    f.write(k.encode() + b" \0B\x04" + struct.pack("<i", int(counts[k])))
        else:
            tmp.write_text("".join(f"{k} {int(counts[k]):4d}\n" for k in keys))


def read_num_utts(path: str | os.PathLike) -> dict[str, int]:
    """Read ``num_utts.ark`` in Kaldi's text or binary int32 form; every count must be at least 1
    (DataError naming the file, and the line of a text table, otherwise)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    if b"\0B" not in data:
        from pyspeaker.data.tables import read_table

        return {key: _count(value, path, line) for line, key, value in read_table(path, form="<id> <count>")}
    counts, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or data[space + 1:space + 4] != b"\0B\x04" or space + 8 > len(data):
            raise DataError(f"not a binary int32 table entry at byte {pos}", path=path)
        key = data[pos:space].decode()
        counts[key] = _count(struct.unpack("<i", data[space + 4:space + 8])[0], path, None, key)
        pos = space + 8
    return counts


def _count(value, path, line: int | None, key: str | None = None) -> int:
    try:
        count = int(value)
    except ValueError:
        raise DataError(f"count '{value}' is not an integer", path=path, line=line) from None
    if count < 1:
        raise DataError(f"count {value}{'' if key is None else f' of {key!r}'} must be at least 1", path=path,
                        line=line)
    return count


def write_speaker_vectors(out_dir: str | os.PathLike, ids: list[str], matrix: np.ndarray,
                          utt2spk: Mapping[str, str], *, stem: str = "spk_xvector",
                          binary_num_utts: bool = False) -> tuple[list[str], list[int]]:
    """``spk_xvector.scp/ark`` + ``num_utts.ark`` in ``out_dir`` (Kaldi's ivector-mean outputs).

    For vectors already on disk (Kaldi's or ours; ``pyspeaker extract`` writes these files itself
    when it knows the speakers). As ``ivector-mean`` does, vectors of utterances that utt2spk does
    not list are left out (with a warning). Returns the speakers and their utterance counts.
    """
    from pyspeaker.store.embeddings import speaker_means

    keep = [i for i, u in enumerate(ids) if u in utt2spk]
    if len(keep) < len(ids):
        log.warning("%d of %d vectors have no speaker in utt2spk; left out", len(ids) - len(keep), len(ids))
    if not keep:
        raise DataError("no vector belongs to a speaker of utt2spk")
    speakers, means, counts = speaker_means([ids[i] for i in keep], np.asarray(matrix)[keep], dict(utt2spk))
    write_vectors(out_dir, stem, speakers, means)
    write_num_utts(Path(out_dir) / "num_utts.ark", dict(zip(speakers, counts)), binary=binary_num_utts)
    return speakers, list(counts)
