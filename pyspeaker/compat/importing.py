"""Pretrained models from other toolkits, made pyspeaker models: the parts every importer shares.

An importer (``pyspeaker/compat/<toolkit>.py``, one per toolkit) reads the toolkit's checkpoint
and config and returns an :class:`Imported`: the ``build_model`` options of the pyspeaker network
that computes the same function, that network's full state dict, the front-end settings (a
FeatureConfig dict, or ``{"waveform": True}`` for a network that computes its features from the
samples) and what was read. :func:`map_state` does the strict tensor mapping, :func:`write_model_dir`
writes the model directory ``pyspeaker import-model`` makes::

    DIR/final.pt      a pyspeaker checkpoint (model, model_options, feat_config, speakers: [], imported_from)
    DIR/source.json   toolkit, file, sha256, the original config, the source keys left out and why

so ``load_model(DIR)``, ``embed --model DIR``, ``export``, ``train --init-from DIR`` and
``run.sh --pretrained DIR`` take it as they take a trained model.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from pyspeaker.errors import DataError

TOOLKITS = ("wespeaker", "speechbrain", "resemblyzer", "voxceleb_trainer")


@dataclass
class Imported:
    """A source model as a pyspeaker model (see the module doc)."""

    toolkit: str
    model_options: dict                      # build_model(**model_options) builds the network
    feat_config: dict                        # FeatureConfig.to_dict(), or {"waveform": True}
    state: dict[str, torch.Tensor]           # the network's complete state dict
    source_file: Path | None                 # the checkpoint read (None: nothing but built-in weights)
    source_config: dict | None = None        # the toolkit's own config, as read
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> why it is not in the model
    notes: dict = field(default_factory=dict)  # anything else worth keeping in source.json


def load_torch_file(path: str | os.PathLike, what: str):
    """``torch.load`` of a source model file (tensors only, no pickled code): its content, or one
    DataError naming the file and ``what`` it should have been."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # foreign pickles, truncated files, ...: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"cannot read as a {what}: {type(e).__name__}: {first}", path=path) from None


def _shape(t) -> list[int]:
    return list(getattr(t, "shape", ()))


def all_finite(value: torch.Tensor) -> bool:
    """No NaN or inf in a checkpoint tensor (integer buffers always pass)."""
    return not torch.is_floating_point(value) or bool(torch.isfinite(value).all())


def map_state(source: Mapping[str, torch.Tensor], network: nn.Module, rename: Callable[[str], str | None],
              *, path: str | os.PathLike | None = None, dropped: dict[str, str] | None = None
              ) -> dict[str, torch.Tensor]:
    """Map ``source`` tensors onto ``network``'s state dict strictly; returns the new state dict.

    ``rename(key)`` gives the pyspeaker key of a source key. Keys listed in ``dropped`` (source key
    -> reason, e.g. the training loss's weights) are left out on purpose. Every other source tensor
    must map to exactly one network tensor of the same shape, and every network tensor must get one;
    otherwise a DataError names the first offending key with both shapes and how many more there are.
    """
    dropped = dropped or {}
    expected = network.state_dict()
    out: dict[str, torch.Tensor] = {}
    taken_by: dict[str, str] = {}
    problems: list[str] = []
    for key, value in source.items():
        if key in dropped:
            continue
        target = rename(key)
        if target is None or target not in expected:
            problems.append(f"source key {key} (shape {_shape(value)}) has no place in the pyspeaker model"
                            + (f" (it would be {target})" if target else ""))
        elif target in taken_by:
            problems.append(f"source keys {taken_by[target]} and {key} both map to {target}")
        elif tuple(value.shape) != tuple(expected[target].shape):
            problems.append(f"source key {key}: shape {_shape(value)}, but pyspeaker's {target} has "
                            f"{_shape(expected[target])}")
        elif not all_finite(value):
            problems.append(f"source key {key} holds NaN or inf")
        else:
            taken_by[target] = key
            out[target] = value.detach().to(expected[target].dtype).clone()
    for target, value in expected.items():
        if target not in out and not any(target in p for p in problems):
            problems.append(f"pyspeaker key {target} (shape {_shape(value)}) gets no source tensor")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"the checkpoint does not fit the model: {problems[0]}{more}", path=path)
    return out


def count_source_parameters(source: Mapping[str, torch.Tensor], dropped: Mapping[str, str] = ()) -> int:
    """Elements of the floating-point source tensors that are not dropped (BatchNorm counters excluded)."""
    return sum(v.numel() for k, v in source.items() if k not in dropped and torch.is_floating_point(v))


def build_imported(imp: Imported) -> nn.Module:
    """The pyspeaker network of ``imp`` with its weights loaded (strictly), in eval mode."""
    from pyspeaker.models import build_model

    net = build_model(**imp.model_options)
    net.load_state_dict(imp.state, strict=True)
    return net.eval()


def checkpoint_of(imp: Imported) -> dict:
    """The pyspeaker checkpoint dict of an imported model (what ``DIR/final.pt`` holds)."""
    return {"model": imp.state, "model_options": dict(imp.model_options), "feat_config": dict(imp.feat_config),
            "speakers": [], "config": {"model": dict(imp.model_options)}, "epoch": 0,
            "imported_from": imp.toolkit, "inference": dict(imp.notes.get("inference", {}))}


def write_model_dir(imp: Imported, out: str | os.PathLike) -> Path:
    """Write ``out/final.pt`` and ``out/source.json`` (atomically: all of it or, on failure, the old dir)."""
    from pyspeaker.fileio import atomic_dir, sha256_file

    out = Path(out)
    net = build_imported(imp)  # refuse a state dict that does not load before anything is written
    source = {"toolkit": imp.toolkit,
              "file": None if imp.source_file is None else os.fspath(Path(imp.source_file).resolve()),
              "sha256": None if imp.source_file is None else sha256_file(imp.source_file),
              "config": imp.source_config, "model_options": imp.model_options,
              "feat_config": imp.feat_config, "parameters": sum(p.numel() for p in net.parameters()),
              "dropped": imp.dropped, **imp.notes}
    with atomic_dir(out) as tmp:
        torch.save(checkpoint_of(imp), tmp / "final.pt")
        (tmp / "source.json").write_text(json.dumps(source, indent=2, default=str) + "\n")
    return out


def import_model(toolkit: str, checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | None = None,
                 embedding_norm: str | os.PathLike | None = None, **options) -> Imported:
    """Read a source toolkit's model (see :data:`TOOLKITS`). ``embedding_norm``: SpeechBrain's
    ``mean_var_norm_emb.ckpt`` (its embedding normalisation, applied as ``encode_batch(normalize=True)``);
    ``options``: the voxceleb_trainer flags (model, encoder_type, nOut, n_mels, log_input, trainfunc).
    Each is refused for the other toolkits."""
    from pyspeaker.errors import ConfigError

    if toolkit not in TOOLKITS:
        raise ConfigError(f"unknown toolkit {toolkit!r}; valid: {', '.join(TOOLKITS)}")
    checkpoint = None if checkpoint is None else Path(checkpoint)
    config = None if config is None else Path(config)
    for given, what in ((checkpoint, "checkpoint"), (config, "config")):
        if given is not None and not given.is_file():
            raise DataError(f"{what} not found", path=given)
    if embedding_norm is not None and toolkit != "speechbrain":
        raise ConfigError(f"--embedding-norm is SpeechBrain's mean_var_norm_emb.ckpt; {toolkit} has none")
    if options and toolkit != "voxceleb_trainer":
        raise ConfigError(f"{', '.join(sorted(options))}: options of a voxceleb_trainer model, not of {toolkit}")
    if toolkit == "resemblyzer":
        if config is not None:
            raise ConfigError("a Resemblyzer model has no config file: leave --config out")
        from pyspeaker.compat.resemblyzer import import_resemblyzer

        return import_resemblyzer(checkpoint)
    if checkpoint is None:
        raise ConfigError(f"--checkpoint is needed for a {toolkit} model")
    if toolkit == "wespeaker":
        from pyspeaker.compat.wespeaker import import_wespeaker

        return import_wespeaker(checkpoint, config)
    if toolkit == "speechbrain":
        from pyspeaker.compat.speechbrain import import_speechbrain

        return import_speechbrain(checkpoint, config, embedding_norm=embedding_norm)
    if config is not None:
        raise ConfigError("a voxceleb_trainer model has no config file: give its training flags as options "
                          "(--vt-model, --trainfunc, ...)")
    from pyspeaker.compat.voxceleb_trainer import import_voxceleb_trainer

    return import_voxceleb_trainer(checkpoint, **options)
