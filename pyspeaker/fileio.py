"""Atomic outputs: results appear complete under their final name or not at all.

Everything is first written to a hidden temporary sibling (same directory, so the final rename
stays on one filesystem), flushed to disk (fsync) and only renamed when the writer finished without
error. A failed run therefore never leaves a half-written file and never clobbers an earlier result.
Temporary siblings carry the host and pid of their writer, so the next run of the same command
removes those a killed run left behind (and never those of a writer that is still alive).
Write errors (a full disk, a read-only directory) become one ``PyspeakerError`` naming the output.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from pyspeaker.errors import ConfigError, PyspeakerError

_HOST = socket.gethostname().split(".")[0].replace("-", "_") or "host"


def _tmp_prefix(final: Path, kind: str) -> str:
    return f".{final.name}.{kind}-{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``final`` whose writer (on this host) has died."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    for kind in ("tmp", "old"):
        for p in final.parent.glob(f".{final.name}.{kind}-{_HOST}-*-*"):
            pid = p.name[len(f".{final.name}.{kind}-{_HOST}-"):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _tmp_sibling(final: Path, is_dir: bool) -> Path:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(final)
        prefix = _tmp_prefix(final, "tmp")
        if is_dir:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
        os.close(fd)
        return Path(name)
    except OSError as e:
        raise write_error(final, e) from None


def write_error(final: str | os.PathLike, err: OSError) -> PyspeakerError:
    """One line for a failed write: the output it was for and the system's reason."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on device"
    return PyspeakerError(f"cannot write this output: {reason}; earlier results are kept", path=final)


# Room kept free beyond a write's own bytes: HDF5 adds metadata and writes its index on close.
SPACE_MARGIN = 1 << 20


def ensure_space(path: str | os.PathLike, nbytes: int) -> None:
    """Raise ENOSPC when the filesystem of ``path`` has less than ``nbytes`` (plus a margin) free.
    Called before HDF5 writes: libhdf5 cannot recover from a failed write (its file handle then
    crashes the process when it is freed), so it must never reach a full disk. Inside
    ``atomic_dir`` / ``atomic_file`` the error becomes one line naming the final output."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    st = os.statvfs(folder)
    if st.f_bavail * st.f_frsize < nbytes + SPACE_MARGIN:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


_RENAME_EXCHANGE = 2  # linux/fs.h
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``final`` (replacing any old file)."""
    final = Path(final)
    tmp = _tmp_sibling(final, is_dir=False)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(final.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(final, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``final``.

    An existing ``final`` is swapped with the new one in one atomic exchange, so there is no moment
    in which ``final`` is missing, and an interrupted run keeps the earlier result.
    """
    final = Path(final)
    tmp = _tmp_sibling(final, is_dir=True)
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        _fsync_tree(tmp)
        if final.is_dir() and not final.is_symlink() and _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old result
        elif final.exists():
            # No atomic exchange (not Linux, or a filesystem without it): old aside, new in.
            old = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final, "old"), dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(final.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(final, e) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def scratch_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary working directory beside ``final``, removed afterwards (and by the next run if
    this one is killed)."""
    final = Path(final)
    tmp = _tmp_sibling(final, is_dir=True)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(final: str | os.PathLike, text: str) -> None:
    with atomic_file(final) as tmp:
        tmp.write_text(text)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def refuse_overlap(outputs: Mapping[str, str | os.PathLike | None],
                   inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Refuse, before any work, an output that is, contains or lies inside one of the inputs.

    Keys are the option names shown to the user (``--out``); None values are ignored. Paths are
    compared resolved, with symlinks followed, so ``out -> features`` is caught too. Writing an
    output replaces it whole, which would delete or rewrite the input.
    """
    for out_name, out in outputs.items():
        if out is None:
            continue
        o = _resolved(out)
        for in_name, inp in inputs.items():
            if inp is None:
                continue
            i = _resolved(inp)
            if o == i:
                relation = "is"
            elif o in i.parents:
                relation = "contains"
            elif i in o.parents:
                relation = "lies inside"
            else:
                continue
            raise ConfigError(f"{out_name} {out} {relation} the input {in_name} {inp}: "
                              "refusing to write over an input; choose another output path")


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
