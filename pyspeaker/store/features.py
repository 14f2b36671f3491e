"""The HDF5 feature store: every utterance of one data set, for one feature config.

Layout of ``feats.h5`` (one file, so opening a store with a million utterances stays cheap):

- ``feats``    float32 [total_frames, dim], all utterances concatenated in sorted utterance order
- ``utt_ids``  utf-8 strings [N]
- ``offsets``  int64 [N + 1]; utterance i is ``feats[offsets[i]:offsets[i+1]]``
- attributes: ``feat_id``, ``config`` (JSON), ``dim``, ``format_version``

A random training crop is then one contiguous slice read. The store directory also holds
``manifest.json`` (config, source data dir and its checksum, counts) and copies of ``utt2spk`` /
``spk2utt`` so that training needs nothing else.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pyspeaker.errors import DataError, require_finite
from pyspeaker.fileio import ensure_space

FORMAT_VERSION = 1
STORE_FILE = "feats.h5"
MANIFEST = "manifest.json"


def _h5():
    import h5py
    return h5py


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, what: str):
    """Open an HDF5 file of ours for reading; a truncated or foreign file is one DataError naming it."""
    h5py = _h5()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"cannot read this {what}: not a complete HDF5 file ({_h5_reason(e)})", path=path) from None
    try:
        with f:
            yield f
    except KeyError as e:
        raise DataError(f"not a pyspeaker {what}: no {e.args[0] if e.args else 'expected'} entry", path=path) from None
    except OSError as e:
        raise DataError(f"cannot read this {what}: damaged HDF5 data ({_h5_reason(e)})", path=path) from None


def _h5_reason(err: OSError) -> str:
    # h5py's messages look like "Unable to synchronously open file (truncated file: eof = 1, ...)"
    text = str(err)
    return text[text.find("(") + 1:text.rfind(")")] if "(" in text else text


class FeatureStoreWriter:
    """Append utterances to a new ``feats.h5``; frames are buffered and written in large blocks."""

    def __init__(self, path: str | os.PathLike, dim: int, attrs: dict | None = None,
                 block_frames: int = 65536):
        h5py = _h5()
        self.path = Path(path)
        self.dim = dim
        self._f = h5py.File(self.path, "w")
        self._feats = self._f.create_dataset("feats", shape=(0, dim), maxshape=(None, dim), dtype="float32",
                                             chunks=(min(block_frames, 4096), dim))
        for k, v in (attrs or {}).items():
            self._f.attrs[k] = v
        self._f.attrs["dim"] = dim
        self._f.attrs["format_version"] = FORMAT_VERSION
        self._ids: list[str] = []
        self._offsets = [0]
        self._buf: list[np.ndarray] = []
        self._buf_frames = 0
        self._block = block_frames

    def add(self, utt: str, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"{utt}: features of shape {feats.shape}, expected [frames, {self.dim}]")
        if self._ids and utt <= self._ids[-1]:
            raise ValueError(f"utterances must be added in sorted order: {utt} after {self._ids[-1]}")
        require_finite(feats, f"features of utterance {utt!r}", path=self.path)
        self._ids.append(utt)
        self._offsets.append(self._offsets[-1] + feats.shape[0])
        self._buf.append(feats)
        self._buf_frames += feats.shape[0]
        if self._buf_frames >= self._block:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        ensure_space(self.path, self._buf_frames * self.dim * 4)
        block = np.concatenate(self._buf)
        start = self._feats.shape[0]
        self._feats.resize(start + block.shape[0], axis=0)
        self._feats[start:] = block
        self._buf, self._buf_frames = [], 0

    def close(self) -> None:
        if self._f is None:
            return
        self._flush()
        ensure_space(self.path, 16 * len(self._ids) + sum(map(len, self._ids)))
        h5py = _h5()
        self._f.create_dataset("utt_ids", data=np.array(self._ids, dtype=object), dtype=h5py.string_dtype())
        self._f.create_dataset("offsets", data=np.asarray(self._offsets, dtype=np.int64))
        self._f.close()
        self._f = None

    @property
    def num_utts(self) -> int:
        return len(self._ids)

    @property
    def num_frames(self) -> int:
        return self._offsets[-1]

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        elif self._f is not None:
            self._f.close()
            self._f = None


class FeatureStore:
    """Read access to a feature store (a store directory or its ``feats.h5``).

    The file is opened lazily and re-opened after a fork, so one instance can be handed to
    DataLoader workers. ``in_memory=True`` reads all frames once (fast random crops for small sets).
    """

    def __init__(self, path: str | os.PathLike, in_memory: bool = False):
        path = Path(path)
        self.dir = path if path.is_dir() else path.parent
        self.h5_path = path / STORE_FILE if path.is_dir() else path
        if not self.h5_path.is_file():
            raise DataError("no feature store here (missing feats.h5); run make-features first", path=self.h5_path)
        with open_h5(self.h5_path, "feature store") as f:
            self.ids: list[str] = [s.decode() if isinstance(s, bytes) else s for s in f["utt_ids"][()]]
            self.offsets: np.ndarray = f["offsets"][()]
            self.dim = int(f.attrs["dim"])
            self.feat_id = str(f.attrs.get("feat_id", ""))
            self.config = json.loads(f.attrs["config"]) if "config" in f.attrs else {}
            self._data = f["feats"][()] if in_memory else None
        self.index = {u: i for i, u in enumerate(self.ids)}
        self.lengths = np.diff(self.offsets)
        self._f = None
        self._pid = None

    def _file(self):
        if self._f is None or self._pid != os.getpid():
            self._f = _h5().File(self.h5_path, "r")
            self._pid = os.getpid()
        return self._f["feats"]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt: str) -> bool:
        return utt in self.index

    def read(self, i: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Frames ``[start, start+length)`` of utterance number ``i`` (whole utterance by default)."""
        lo = int(self.offsets[i]) + start
        hi = int(self.offsets[i + 1]) if length is None else lo + length
        src = self._data if self._data is not None else self._file()
        return src[lo:hi]

    def __getitem__(self, utt: str) -> np.ndarray:
        try:
            return self.read(self.index[utt])
        except KeyError:
            raise DataError(f"utterance {utt!r} is not in the feature store", path=self.h5_path) from None

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, u in enumerate(self.ids):
            yield u, self.read(i)

    def manifest(self) -> dict:
        p = self.dir / MANIFEST
        return json.loads(p.read_text()) if p.is_file() else {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_f"] = None
        return state


def merge_stores(parts: Iterable[str | os.PathLike], out: str | os.PathLike, attrs: dict | None = None) -> tuple[int, int]:
    """Concatenate per-job stores (each sorted, jobs in sorted order) into one ``feats.h5``."""
    parts = [FeatureStore(p) for p in parts]
    dim = parts[0].dim
    with FeatureStoreWriter(out, dim, attrs) as w:
        for part in parts:
            for utt, feats in part.items():
                w.add(utt, feats)
        return w.num_utts, w.num_frames


def write_kaldi_feats(store: FeatureStore, tmp_dir: Path, final_dir: Path, compress: bool = False) -> int:
    """Also write the store as Kaldi ``feats.ark`` + ``feats.scp`` (optionally compressed matrices)."""
    from pyspeaker.store.kaldi_scp import write_ark_scp

    # kaldiio compression method 2 is Kaldi's kSpeechFeature (the default of copy-feats --compress).
    return write_ark_scp(tmp_dir, final_dir, "feats", store.items(), compression_method=2 if compress else None)
