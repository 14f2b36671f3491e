"""Training configuration: YAML file merged over defaults, plus ``--set key=value`` overrides.

Unknown keys are refused (a typo must not silently fall back to a default). Values the data
determine (number of speakers, feature dimension) are never part of the config.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from pyspeaker.errors import ConfigError

DEFAULTS: dict = {
    "model": {"name": "ResNetSE34L", "encoder_type": "SAP", "nOut": 512, "input_norm": "instance"},
    "loss": {"name": "amsoftmax"},  # other keys are the chosen loss's own options (margin, scale, ...)
    "data": {
        "crop_frames": 200,      # random training crop length (frames)
        "batch_size": 64,        # crops per optimiser step
        "num_workers": 0,        # DataLoader worker processes
        "in_memory": True,       # load the whole training store into RAM (fast random crops)
    },
    "optim": {
        "name": "adam",          # adam | sgd
        "lr": 0.001,
        "weight_decay": 0.0,
        "momentum": 0.9,         # sgd only
        "lr_decay": 0.95,        # multiplied into lr every `step_epochs` epochs
        "step_epochs": 1,
    },
    "train": {"max_epoch": 20, "seed": 0, "grad_clip": 0.0, "device": "auto"},
}

# Per-family options that models/losses accept beyond the common ones above.
_OPEN_SECTIONS = ("model", "loss")


def _merge(base: dict, override: dict, where: str, path: str | None) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in base:
            if where.split(".")[0] in _OPEN_SECTIONS and where.count(".") == 0:
                out[key] = value
                continue
            valid = ", ".join(sorted(base))
            raise ConfigError(f"unknown setting {where + '.' if where else ''}{key}; valid here: {valid}", path=path)
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"setting {where + '.' if where else ''}{key} must be a mapping", path=path)
            out[key] = _merge(base[key], value, f"{where}.{key}" if where else key, path)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.01), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """Defaults <- YAML file <- ``section.key=value`` overrides; validated."""
    user: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("config file not found", path=path)
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise ConfigError(f"not valid YAML: {getattr(e, 'problem', e)}", path=path,
                              line=None if line is None else line + 1) from None
        if not isinstance(user, dict):
            raise ConfigError("the config must be a mapping of sections (model, loss, data, optim, train)", path=path)
    for text in overrides:
        keys, value = parse_override(text)
        node = user
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    cfg = _merge(DEFAULTS, user, "", None if path is None else str(path))
    _validate(cfg, path)
    return cfg


def _validate(cfg: dict, path) -> None:
    d, o, t = cfg["data"], cfg["optim"], cfg["train"]
    for section, key in (("data", "crop_frames"), ("data", "batch_size"), ("train", "max_epoch")):
        if not isinstance(cfg[section][key], int) or cfg[section][key] < 1:
            raise ConfigError(f"{section}.{key} must be a positive integer, got {cfg[section][key]!r}", path=path)
    if o["name"] not in ("adam", "sgd"):
        raise ConfigError(f"unknown optimiser {o['name']!r}; valid: adam, sgd", path=path)
    if float(o["lr"]) <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o['lr']}", path=path)
    if t["device"] not in ("auto", "cpu", "cuda") and not str(t["device"]).startswith("cuda:"):
        raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {t['device']!r}", path=path)
    del d


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
