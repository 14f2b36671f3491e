"""Timestamped logging shared by every command (ESPnet-style lines)."""
from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


def setup_logging(verbose: bool = False, log_file: str | os.PathLike | None = None) -> None:
    """Log to stderr (and optionally also to ``log_file``); safe to call more than once."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, mode="a"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    """A logger under the ``pyspeaker`` hierarchy (so one handler can capture a whole run)."""
    return logging.getLogger(name if name.startswith("pyspeaker") else f"pyspeaker.{name}")
