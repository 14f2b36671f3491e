"""Kaldi data directories, trial lists and VoxCeleb lists: read, write, validate, split.

The names below are imported on first use, so that reading a trial list (``pyspeaker score``,
``compute-metrics``) does not import the data-dir and audio modules.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DataDir": "kaldi_dir",
    "Problem": "kaldi_dir",
    "read_table": "kaldi_dir",
    "read_utt2spk": "kaldi_dir",
    "read_voxceleb_train_list": "kaldi_dir",
    "split_data_dir": "kaldi_dir",
    "validate_data_dir": "kaldi_dir",
    "write_data_dir": "kaldi_dir",
    "Trials": "trials",
    "read_trials": "trials",
    "write_trials": "trials",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
