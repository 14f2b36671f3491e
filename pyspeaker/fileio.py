"""Atomic outputs: results appear complete under their final name or not at all.

Everything is first written to a hidden temporary sibling (same directory, so the final
``os.replace`` is a rename on one filesystem) and only renamed when the writer finished without
error. A failed run therefore never leaves a half-written file and never clobbers an earlier result.
"""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _tmp_sibling(final: Path, is_dir: bool) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``final`` (replacing any old file)."""
    final = Path(final)
    tmp = _tmp_sibling(final, is_dir=False)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``final``.

    An existing ``final`` is replaced only after the new one is complete (old moved aside,
    new renamed in, old removed), so an interrupted run keeps the earlier result.
    """
    final = Path(final)
    tmp = _tmp_sibling(final, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(final: str | os.PathLike, text: str) -> None:
    with atomic_file(final) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing millions of lines into small lists and
    tuples: it would rescan them over and over (parsing is several times slower). Nothing built
    this way forms reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
