"""Checkpoints: everything needed to rebuild the model (and resume) in one atomic file.

Keys of a training checkpoint: ``model`` (state dict of the embedding network), ``model_options``
(``build_model`` keywords), ``config``, ``speakers``, ``feat_id``, ``feat_config``, ``epoch``;
epoch checkpoints add ``loss``, ``optimizer``, ``scheduler``, ``scaler``, ``metrics`` (the metrics.tsv
rows so far) and the validation results. No random-generator state: every epoch re-seeds from
(seed, epoch, rank), so a resumed run repeats the epochs it continues exactly.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from pyspeaker.errors import DataError
from pyspeaker.fileio import atomic_file

EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")


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


def require_training_checkpoint(ckpt, path: str | os.PathLike) -> None:
    """A pyspeaker checkpoint has the network's state and the options to rebuild it."""
    if isinstance(ckpt, dict) and "model" in ckpt and "model_options" in ckpt:
        return
    if isinstance(ckpt, dict) and any(str(k).replace("module.", "", 1).startswith("__S__.") for k in ckpt):
        raise DataError("this is a voxceleb_trainer model (keys __S__.*), not a pyspeaker checkpoint: use it with "
                        "'pyspeaker voxceleb-eval --initial_model', or train and average pyspeaker runs", path=path)
    raise DataError("not a pyspeaker training checkpoint (no 'model' / 'model_options')", path=path)


def model_from_checkpoint(path: str | os.PathLike):
    """Rebuild the embedding network stored in a pyspeaker checkpoint; returns (model, checkpoint)."""
    from pyspeaker.models import build_model

    ckpt = load_checkpoint(path)
    require_training_checkpoint(ckpt, path)
    model = build_model(**ckpt["model_options"])
    model.load_state_dict(ckpt["model"], strict=True)
    model.eval()
    return model, ckpt


def epoch_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of every ``epoch_NNNN.pt`` in ``ckpt_dir``, in epoch order."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := EPOCH_FILE.fullmatch(p.name))]
    return sorted(found)


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep_last: int, keep_epochs=()) -> list[Path]:
    """Delete all but the last ``keep_last`` epoch checkpoints (0 = keep all) and those of
    ``keep_epochs``; returns the deleted."""
    if keep_last <= 0:
        return []
    keep = {int(e) for e in keep_epochs}
    old = [p for e, p in epoch_checkpoints(ckpt_dir)[:-keep_last] if e not in keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def average_states(states: list[dict]) -> dict:
    """Element-wise mean of state dicts with the same keys; integer tensors (BatchNorm's
    ``num_batches_tracked``) are taken from the last one."""
    keys = list(states[-1])
    for s in states[:-1]:
        if list(s) != keys:
            diff = sorted(set(s) ^ set(keys))
            raise DataError(f"cannot average checkpoints of different models (key {diff[0] if diff else '?'})")
    out = {}
    for k in keys:
        ref = states[-1][k]
        if ref.is_floating_point():
            if any(s[k].shape != ref.shape for s in states):
                raise DataError(f"cannot average checkpoints of different models ({k} has different shapes)")
            out[k] = (sum(s[k].double() for s in states) / len(states)).to(ref.dtype)
        else:
            out[k] = ref.clone()
    return out


def average_checkpoints(paths: list[str | os.PathLike], out: str | os.PathLike, extra: dict | None = None) -> dict:
    """Average the models (and loss weights) of ``paths`` into one checkpoint at ``out``.

    The result has the keys of the last checkpoint that describe the model (model_options,
    config, speakers, feat_id, ...), ``epoch`` of the last one and ``averaged_from``; optimiser and
    scheduler states are left out (they belong to single checkpoints, not to an average); ``extra``
    keys are added (the trainer's ``select``, ``selected_from``). ``selected_from`` is the epochs
    averaged, unless ``extra`` says otherwise.
    """
    if not paths:
        raise DataError("no checkpoints to average")
    ckpts = [load_checkpoint(p) for p in paths]
    for p, c in zip(paths, ckpts):
        require_training_checkpoint(c, p)
        if c["model_options"] != ckpts[-1]["model_options"]:
            raise DataError(f"model options differ from those of {paths[-1]}", path=p)
    last = ckpts[-1]
    state = {k: v for k, v in last.items() if k not in ("optimizer", "scheduler", "scaler", "rng", "loss", "model")}
    state["model"] = average_states([c["model"] for c in ckpts])
    if all("loss" in c for c in ckpts):
        state["loss"] = average_states([c["loss"] for c in ckpts])
    state["averaged_from"] = [os.fspath(p) for p in paths]
    state["selected_from"] = [c.get("epoch") for c in ckpts]
    state.update(extra or {})
    save_checkpoint(out, state)
    return state
