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
