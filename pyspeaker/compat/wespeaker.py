"""WeSpeaker's pretrained and trained models as pyspeaker models (``import-model --from wespeaker``).

A WeSpeaker model is two files (a pretrained model's directory, or a training's ``exp/<name>/``
with ``models/avg_model.pt``):

- ``avg_model.pt`` / ``model_<N>.pt``: the model's plain state dict (``torch.save(model.state_dict())``),
  or a dict with a ``state_dict`` entry; keys may carry DataParallel's ``module.`` prefix and the
  training loss's ``projection.*`` tensors (its speaker classifier), which are left out;
- ``config.yaml``: ``model`` (the network's name), ``model_args`` (its constructor's keywords) and
  ``dataset_args`` (``fbank_args``: num_mel_bins, frame_length, frame_shift, dither;
  ``resample_rate``; ``cmvn`` / ``cmvn_args``).

The network is pyspeaker's own copy of the WeSpeaker one (:mod:`pyspeaker.models.wespeaker_resnet`,
:mod:`~pyspeaker.models.wespeaker_ecapa`, :mod:`~pyspeaker.models.campplus`), with the same tensor
names, loaded strictly. The front-end is pyspeaker's Kaldi fbank with WeSpeaker's extraction
settings: ``kaldi.fbank(wav * 2**15, hamming window, no energy, dither 0)`` at the config's mel bins
and frame sizes, then the utterance mean subtracted (WeSpeaker's CMN; its training dither is not
applied at extraction, as WeSpeaker's own extraction sets it to 0).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from pyspeaker.compat.importing import Imported, map_state
from pyspeaker.errors import ConfigError, DataError

# WeSpeaker model name -> (pyspeaker model name, fixed options, the model_args WeSpeaker's constructor takes)
_RESNET_ARGS = ("feat_dim", "embed_dim", "pooling_func", "two_emb_layer")
_ECAPA_ARGS = ("feat_dim", "embed_dim", "pooling_func", "emb_bn")
_CAMPPLUS_ARGS = ("feat_dim", "embed_dim", "pooling_func", "growth_rate", "bn_size", "init_channels", "config_str")
MODELS: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    "ResNet18": ("ResNet18", {}, _RESNET_ARGS),
    "ResNet34": ("ResNet34", {}, _RESNET_ARGS),
    "ResNet221": ("ResNet221", {}, _RESNET_ARGS),
    "ResNet293": ("ResNet293", {}, _RESNET_ARGS),
    "ECAPA_TDNN_GLOB_c512": ("ECAPA_TDNN_GLOB_c512", {}, _ECAPA_ARGS),
    "ECAPA_TDNN_GLOB_c1024": ("ECAPA_TDNN_GLOB_c1024", {}, _ECAPA_ARGS),
    # the same networks without the pooling's global context
    "ECAPA_TDNN_c512": ("ECAPA_TDNN_GLOB_c512", {"global_context_att": False}, _ECAPA_ARGS),
    "ECAPA_TDNN_c1024": ("ECAPA_TDNN_GLOB_c1024", {"global_context_att": False}, _ECAPA_ARGS),
    "CAMPPlus": ("CAMPPlus", {}, _CAMPPLUS_ARGS),
}
# model_args WeSpeaker's constructors have no default for
_REQUIRED = {"ResNet": ("feat_dim", "embed_dim"), "ECAPA": ("feat_dim", "embed_dim"), "CAMPPlus": ()}
# WeSpeaker's compute_fbank(num_mel_bins=80, frame_length=25, frame_shift=10, dither=1.0)
FBANK_DEFAULTS = {"num_mel_bins": 80, "frame_length": 25.0, "frame_shift": 10.0, "dither": 1.0}
SAMPLE_RATE = 16000
LOSS_HEAD = "projection."
LOSS_REASON = "training loss head (projection)"


def read_config(path: str | os.PathLike) -> dict:
    """A WeSpeaker ``config.yaml`` as a dict; ConfigError if unreadable or without ``model_args``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError("WeSpeaker config not found", path=path)
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read as YAML: {str(e).splitlines()[0]}", path=path) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_args"), dict):
        raise ConfigError("not a WeSpeaker config.yaml: no 'model_args' section", path=path)
    return config


def find_config(checkpoint: Path) -> Path | None:
    """The config.yaml WeSpeaker keeps with a checkpoint: beside it (a pretrained model's
    directory), or one up from ``models/`` (a training's exp dir)."""
    for candidate in (checkpoint.parent / "config.yaml",
                      *([checkpoint.parent.parent / "config.yaml"] if checkpoint.parent.name == "models" else [])):
        if candidate.is_file():
            return candidate
    return None


def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict in a WeSpeaker checkpoint and its format's name; DataError if it is none."""
    from pyspeaker.compat.importing import load_torch_file

    path = Path(path)
    ckpt = load_torch_file(path, "WeSpeaker checkpoint")
    if not isinstance(ckpt, Mapping):
        raise DataError(f"not a WeSpeaker checkpoint: it holds a {type(ckpt).__name__}, not a state dict", path=path)
    if "model_options" in ckpt:
        raise DataError("this is a pyspeaker checkpoint, not a WeSpeaker one", path=path)
    state, fmt = ckpt, "state dict"
    if isinstance(ckpt.get("state_dict"), Mapping):  # as WeSpeaker's load_checkpoint accepts
        state, fmt = ckpt["state_dict"], "dict with a state_dict entry"
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"not a WeSpeaker checkpoint: entry {key!r} is a {type(value).__name__}, not a tensor",
                            path=path)
    return dict(state), fmt


def strip_module(key: str) -> str:
    """``key`` without DataParallel's leading ``module.`` (no pyspeaker key starts with it)."""
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def _family(name: str) -> str:
    return "ResNet" if name.startswith("ResNet") else "ECAPA" if name.startswith("ECAPA") else "CAMPPlus"


def model_options(name: str, model_args: Mapping, *, path=None) -> dict:
    """The ``build_model`` options of WeSpeaker model ``name`` built with ``model_args``."""
    if name not in MODELS:
        raise ConfigError(f"WeSpeaker model {name!r} cannot be imported; supported: {', '.join(MODELS)}", path=path)
    py_name, fixed, allowed = MODELS[name]
    unknown = sorted(set(model_args) - set(allowed))
    if unknown:
        raise ConfigError(f"model_args {', '.join(unknown)} are not arguments of WeSpeaker's {name} "
                          f"(it takes {', '.join(allowed)})", path=path)
    missing = [k for k in _REQUIRED[_family(name)] if k not in model_args]
    if missing:
        raise ConfigError(f"model_args lacks {', '.join(missing)} (WeSpeaker's {name} needs them)", path=path)
    opts = {"name": py_name, **fixed, **dict(model_args)}
    opts.setdefault("feat_dim", 80)     # CAMPPlus's defaults
    opts.setdefault("embed_dim", 512)
    # pyspeaker's names for the input and embedding sizes (inference checks n_mels against the features)
    opts["n_mels"], opts["nOut"] = int(opts["feat_dim"]), int(opts["embed_dim"])
    return opts


def feature_config(config: Mapping, feat_dim: int, *, path=None) -> tuple[dict, dict]:
    """WeSpeaker's extraction front-end as a FeatureConfig dict, and notes on what was taken."""
    from pyspeaker.features import FeatureConfig

    ds = config.get("dataset_args") or {}
    if not isinstance(ds, Mapping):
        raise ConfigError("dataset_args is not a mapping", path=path)
    frontend = ds.get("frontend", "fbank")
    if frontend != "fbank":
        raise ConfigError(f"dataset_args.frontend {frontend!r}: only WeSpeaker's Kaldi fbank front-end can be "
                          "imported", path=path)
    fb = ds.get("fbank_args") or {}
    unknown = sorted(set(fb) - set(FBANK_DEFAULTS))
    if unknown:
        raise ConfigError(f"dataset_args.fbank_args {', '.join(unknown)} are not WeSpeaker fbank options "
                          f"({', '.join(FBANK_DEFAULTS)})", path=path)
    fb = {**FBANK_DEFAULTS, **fb}
    if int(fb["num_mel_bins"]) != int(feat_dim):
        raise ConfigError(f"fbank_args.num_mel_bins {fb['num_mel_bins']} differs from model_args.feat_dim "
                          f"{feat_dim}", path=path)
    cmvn = bool(ds.get("cmvn", True))
    cmvn_args = {"norm_mean": True, "norm_var": False, **(ds.get("cmvn_args") or {})}
    if cmvn and cmvn_args["norm_var"]:
        # WeSpeaker divides by sqrt(unbiased var + 1e-8); pyspeaker's is Kaldi's (biased): not the same numbers
        raise ConfigError("cmvn_args.norm_var: true (variance normalisation) is not supported", path=path)
    cfg = FeatureConfig(kind="fbank", sample_frequency=float(ds.get("resample_rate", SAMPLE_RATE)),
                        num_mel_bins=int(fb["num_mel_bins"]), frame_length=float(fb["frame_length"]),
                        frame_shift=float(fb["frame_shift"]), dither=0.0, window_type="hamming", use_energy=False,
                        cmn="utterance" if cmvn and cmvn_args["norm_mean"] else "none")
    notes = {"fbank_args": fb, "training_dither_not_applied": float(fb["dither"])}
    return cfg.to_dict(), notes


def import_wespeaker(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None, *,
                     model: str | None = None) -> Imported:
    """A WeSpeaker checkpoint (+ its config.yaml) as a pyspeaker model (see the module doc).

    ``config`` defaults to the ``config.yaml`` kept with the checkpoint (see :func:`find_config`);
    ``model`` names the WeSpeaker network when the config does not (it must agree if both do).
    ConfigError for a missing or unsupported config, DataError for a checkpoint that is not one of
    that network (naming the first mismatching key and both shapes).
    """
    from pyspeaker.models import build_model

    checkpoint = Path(checkpoint)
    if config is None:
        config = find_config(checkpoint)
        if config is None:
            raise ConfigError("a WeSpeaker checkpoint needs the config.yaml it was trained with (model, model_args, "
                              "fbank_args): pass --config config.yaml", path=checkpoint)
    config = Path(config)
    cfg = read_config(config)
    name = cfg.get("model")
    if model is not None and name is not None and model != name:
        raise ConfigError(f"--model {model} differs from the config's model {name}", path=config)
    name = model or name
    if not name:
        raise ConfigError("the config names no 'model': pass --model (e.g. ResNet34)", path=config)
    options = model_options(name, cfg["model_args"], path=config)
    feat_config, feat_notes = feature_config(cfg, options["feat_dim"], path=config)

    state, fmt = read_state(checkpoint)
    dropped = {k: LOSS_REASON for k in state if strip_module(k).startswith(LOSS_HEAD)}
    try:
        net = build_model(**options)
    except ConfigError as e:
        raise ConfigError(e.message, path=config) from None
    mapped = map_state(state, net, strip_module, path=checkpoint, dropped=dropped)
    notes = {"wespeaker_model": name, "checkpoint_format": fmt, "config_file": os.fspath(config.resolve()),
             **feat_notes}
    if any(k.startswith("module.") for k in state):
        notes["stripped_prefix"] = "module."
    return Imported(toolkit="wespeaker", model_options=options, feat_config=feat_config, state=mapped,
                    source_file=checkpoint, source_config=cfg, dropped=dropped, notes=notes)
