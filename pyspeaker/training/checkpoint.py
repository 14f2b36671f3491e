"""Checkpoints: everything needed to rebuild the model (and resume) in one atomic file."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which one
        raise DataError(f"cannot read checkpoint: {e}", path=path) from None


def model_from_checkpoint(path: str | os.PathLike):
    """Rebuild the embedding network stored in a pyspeaker checkpoint; returns (model, checkpoint)."""
    from pyspeaker.models import build_model

    ckpt = load_checkpoint(path)
    if "model" not in ckpt or "model_options" not in ckpt:
        raise DataError("not a pyspeaker training checkpoint (no 'model' / 'model_options')", path=path)
    model = build_model(**ckpt["model_options"])
    model.load_state_dict(ckpt["model"], strict=True)
    model.eval()
    return model, ckpt
