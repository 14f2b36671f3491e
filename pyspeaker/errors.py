"""One error type for bad input: it names the file, the line and what is wrong.

The CLI turns it into a single ``error: <file>:<line>: <problem>`` line on stderr and exit code 1,
so shell stages stop with a message a user can act on instead of a traceback.
"""
from __future__ import annotations

import os


class PyspeakerError(Exception):
    """Bad input or an impossible request; message meant for the user."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return where + self.message


class DataError(PyspeakerError):
    """A problem in a data file (data dir, trials, scores, audio)."""


class ConfigError(PyspeakerError):
    """A bad setting: unknown model name, invalid option, incompatible combination."""


def require_finite(values, what: str, path: str | os.PathLike | None = None, ids=None,
                   line: int | None = None) -> None:
    """Raise a DataError when ``values`` hold NaN or inf: naming the file, and the row's id when
    ``ids`` (one per row) are given. Non-finite values are refused where they enter, so they never
    reach a store, a back-end or a score file."""
    import numpy as np

    values = np.asarray(values)
    if values.dtype.kind not in "fc" or values.size == 0:
        return
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    kind = "NaN" if np.isnan(values[bad]).any() else "inf"
    count = int(bad.sum())
    if ids is not None and values.ndim >= 1:
        rows = bad.reshape(len(values), -1).any(axis=1)
        first = int(np.argmax(rows))
        raise DataError(f"{what} of {ids[first]!r} contain {kind} ({int(rows.sum())} of {len(values)} rows "
                        f"non-finite)", path=path, line=line)
    raise DataError(f"{what} contain {kind} ({count} of {values.size} values non-finite)", path=path, line=line)
