"""Noise and room-impulse-response banks: every recording of a MUSAN-layout dir (or data dir) or
RIR dir decoded once into one float32 array + offsets, so that no file is opened per crop.

A bank lives in a folder ``<cache_dir>/<what>-<key>/`` holding ``samples.npy`` (all recordings
end to end, memory-mapped when opened) and ``index.json`` (offsets, categories, entries, sample
rate). ``key`` hashes the sorted list of entries with each file's size and mtime and the sample
rate: a later run over the same files reuses the bank, a changed dir (a file added, removed or
rewritten) gets a new one. Recordings at another sample rate are resampled once, when the bank
is built (one log line). The folder is written atomically (``fileio.atomic_dir``).

``cache_dir`` None: the bank is built in memory for this process only (tests, one-off use).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)

BANK_VERSION = 1


def default_cache_dir() -> Path:
    """``$PYSPEAKER_CACHE/banks``, else ``~/.cache/pyspeaker/banks``."""
    root = os.environ.get("PYSPEAKER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyspeaker")
    return Path(root) / "banks"


@dataclass
class Bank:
    samples: np.ndarray          # float32 [total], memory-mapped when the bank is on disk
    offsets: np.ndarray          # int64 [n + 1]: recording i is samples[offsets[i]:offsets[i + 1]]
    kinds: list[str]             # category of each recording (noise | music | speech | rir)
    entries: list[str]           # its wav.scp entry or path (for messages)
    sample_rate: int
    path: Path | None = None     # the bank folder (None: in memory only)

    def __len__(self) -> int:
        return len(self.entries)

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def clip(self, i: int) -> np.ndarray:
        return self.samples[int(self.offsets[i]):int(self.offsets[i + 1])]

    def of_kind(self, kind: str) -> np.ndarray:
        return np.array([i for i, k in enumerate(self.kinds) if k == kind], dtype=np.int64)

    def segment_start(self, i: int, length: int, rng: np.random.Generator) -> int:
        """The random start of a ``length``-sample segment of recording ``i`` (0 when it is shorter),
        drawn as ``audio.read_random_span`` draws it."""
        total = self.length(i)
        return int(rng.integers(0, total - length + 1)) if total > length else 0

    def segment(self, i: int, start: int, length: int) -> np.ndarray:
        """``length`` samples of recording ``i`` from ``start`` (a shorter recording wrapped around)."""
        clip = self.clip(i)
        if len(clip) <= length:
            return np.resize(np.asarray(clip, dtype=np.float32), length)
        return np.asarray(clip[start:start + length], dtype=np.float32)


def _stat(entry: str) -> tuple[int, int]:
    """(size, mtime in ns) of a plain file entry; (-1, -1) for pipes and ark offsets."""
    try:
        st = os.stat(entry.strip())
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def bank_key(what: str, items: list[tuple[str, str]], sample_rate: int) -> str:
    """The hash naming a bank: entries, their categories, sizes and mtimes, the sample rate."""
    rows = [[kind, entry, *_stat(entry)] for kind, entry in sorted(items)]
    text = json.dumps({"version": BANK_VERSION, "what": what, "rate": int(sample_rate), "rows": rows})
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _load(entry: str, source: Path) -> tuple[np.ndarray, int]:
    from pyspeaker.audio import load_audio

    x, rate = load_audio(entry, path_for_errors=source)
    if len(x) == 0:
        raise DataError(f"no audio in {entry!r} (0 samples)", path=source)
    return np.asarray(x, dtype=np.float32), int(rate)


def _decoded(items: list[tuple[str, str]], sample_rate: int, source: Path, what: str):
    """Yields each recording at ``sample_rate``; one log line for those that were resampled."""
    from pyspeaker.audio import resample

    other: dict[int, int] = {}
    for _, entry in items:
        x, rate = _load(entry, source)
        if rate != sample_rate:
            other[rate] = other.get(rate, 0) + 1
            x = resample(x, rate, sample_rate)
        yield np.ascontiguousarray(x, dtype=np.float32)
    for rate, count in sorted(other.items()):
        log.info("%s: %d %s recordings at %d Hz resampled once to %d Hz for the bank", source, count, what, rate,
                 sample_rate)


_HEADER = 128  # bytes of a version 1.0 .npy header of a 1-D float32 array (any length)


def _npy_header(n: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (int(n),)})
    head = buf.getvalue()
    assert len(head) == _HEADER, len(head)
    return head


def build_bank(what: str, items: list[tuple[str, str]], sample_rate: int, source: str | os.PathLike,
               cache_dir: str | os.PathLike | None) -> Bank:
    """The bank of ``items`` ([(category, entry)]) at ``sample_rate``: reused from ``cache_dir``
    when it holds one for the same files, else built (streamed to disk, never all in RAM)."""
    source = Path(source)
    items = sorted(items)
    if not items:
        raise DataError(f"no {what} recordings to build a bank from", path=source)
    if cache_dir is None:
        clips = list(_decoded(items, sample_rate, source, what))
        offsets = np.r_[0, np.cumsum([len(c) for c in clips])].astype(np.int64)
        return Bank(np.concatenate(clips), offsets, [k for k, _ in items], [e for _, e in items], int(sample_rate))
    final = Path(cache_dir) / f"{what}-{bank_key(what, items, sample_rate)}"
    if (final / "index.json").is_file():
        log.info("%s bank of %s: reusing %s", what, source, final)
        return open_bank(final)
    from pyspeaker.fileio import atomic_dir

    final.parent.mkdir(parents=True, exist_ok=True)
    lengths = []
    with atomic_dir(final) as tmp:
        with open(tmp / "samples.npy", "wb") as f:
            f.write(b"\0" * _HEADER)
            for clip in _decoded(items, sample_rate, source, what):
                f.write(clip.astype("<f4", copy=False).tobytes())
                lengths.append(len(clip))
            f.seek(0)
            f.write(_npy_header(sum(lengths)))
        index = {"version": BANK_VERSION, "what": what, "source": str(source), "sample_rate": int(sample_rate),
                 "offsets": np.r_[0, np.cumsum(lengths)].astype(np.int64).tolist(),
                 "kinds": [k for k, _ in items], "entries": [e for _, e in items]}
        (tmp / "index.json").write_text(json.dumps(index))
    log.info("%s bank of %s: %d recordings, %.1f min, built in %s", what, source, len(items),
             sum(lengths) / sample_rate / 60.0, final)
    return open_bank(final)


def open_bank(path: str | os.PathLike) -> Bank:
    path = Path(path)
    index = json.loads((path / "index.json").read_text())
    samples = np.load(path / "samples.npy", mmap_mode="r")
    return Bank(samples, np.asarray(index["offsets"], dtype=np.int64), list(index["kinds"]), list(index["entries"]),
                int(index["sample_rate"]), path)
