"""Fine-tuning: a training that starts from a trained or imported model (``train --init-from``),
optionally with part of the network frozen (``train.freeze``).

``--init-from PATH`` (a pyspeaker checkpoint, an experiment dir, or a model dir of
``import-model``) builds the network from the checkpoint's ``model_options`` and loads its weights
strictly; the loss head is new, for the speakers of the new training data. Rules:

- the network comes from the checkpoint: the config's ``model`` section is replaced by its
  options. A model section left at the defaults is replaced silently; every setting the config
  gives that differs from the defaults (``model.name`` included) must equal the checkpoint's,
  else a ConfigError names both (so a config written for another network is never fine-tuned
  from this one by mistake);
- the front-end stays the model's: a features model (``feat_config`` a FeatureConfig) trains
  from a feature store with the model's ``feat_id`` (refused otherwise, with the make-features
  options of the model's features, written out as Kaldi conf files) or from audio
  (``--data-dir``), the model's features then computed on the fly without ``data.feat_conf``
  (given, it must describe the same features); a waveform model (``feat_config`` ``{"waveform":
  true}``) trains from audio only;
- the new checkpoints record ``init_from`` (path, sha256, epoch, toolkit) and keep the model's
  ``feat_config`` (and ``inference`` settings), so ``load_model(exp)`` embeds as the model did;
- resume: a run started with ``--init-from`` resumes (``--resume yes|auto``) from its own epoch
  checkpoints when ``--init-from`` names the same file (same sha256) again; with another file, or
  without ``--init-from``, ``yes`` refuses and ``auto`` starts over.

``train.freeze``: a list of prefixes of the network's parameter names, as
``network.named_parameters()`` gives them (``tdnn1``, ``tdnn2.conv``, ``model.layer1`` for a
network behind voxceleb_trainer's waveform front-end, ``lstm`` for Resemblyzer's; a prefix matches
a name equal to it or starting with it plus ``.``). Matching parameters get ``requires_grad``
False and are not given to the optimiser; every module under a prefix (and any module whose
parameters are all frozen) stays in eval mode while training, so its BatchNorm statistics and
dropout are fixed too: a frozen part computes exactly what it did. A prefix that matches nothing,
or a freeze of every parameter, is a ConfigError.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)

_MODEL_SECTION_HINT = ("with --init-from the network comes from the checkpoint: leave the config's model section "
                       "at the defaults (or give the checkpoint's own settings)")


@dataclass
class InitSource:
    """The model a training starts from (see the module doc)."""

    path: Path               # the checkpoint file
    sha256: str
    ckpt: dict
    feature_cfg: object      # FeatureConfig of a features model; None for a waveform model or unknown settings
    feat_id: str             # "waveform" for a waveform model

    @property
    def model_options(self) -> dict:
        return dict(self.ckpt["model_options"])

    @property
    def waveform(self) -> bool:
        return bool(self.ckpt["model_options"].get("waveform") or (self.ckpt.get("feat_config") or {}).get("waveform"))

    def record(self) -> dict:
        """What the new checkpoints keep of it (``init_from``)."""
        return {"path": os.fspath(self.path.resolve()), "sha256": self.sha256, "epoch": self.ckpt.get("epoch"),
                "model": self.ckpt["model_options"].get("name"), "imported_from": self.ckpt.get("imported_from")}

    def describe(self) -> str:
        what = (f"imported from {self.ckpt['imported_from']}" if self.ckpt.get("imported_from")
                else f"epoch {self.ckpt.get('epoch', '?')}, {len(self.ckpt.get('speakers') or [])} speakers")
        return f"{self.path} ({self.ckpt['model_options'].get('name')}, {what}; front-end {self.feat_id})"


def load_init_source(path: str | os.PathLike) -> InitSource:
    """The checkpoint ``path`` names (file, experiment dir or model dir); one DataError naming the
    file when it is not a pyspeaker model."""
    from pyspeaker.features import FeatureConfig
    from pyspeaker.fileio import sha256_file
    from pyspeaker.inference import resolve_checkpoint
    from pyspeaker.training.checkpoint import load_checkpoint, require_training_checkpoint

    try:
        file = resolve_checkpoint(path)
    except DataError as e:
        raise DataError(f"--init-from: {e.message}", path=e.path) from None
    try:
        ckpt = load_checkpoint(file)
    except DataError:
        raise DataError("--init-from: not a pyspeaker model (cannot read it as a checkpoint; models of other "
                        "toolkits are made pyspeaker models by 'pyspeaker import-model')", path=file) from None
    try:
        require_training_checkpoint(ckpt, file)
    except DataError as e:
        raise DataError(f"--init-from: {e.message}", path=file) from None
    stored = ckpt.get("feat_config") or {}
    feature_cfg = None
    if ckpt["model_options"].get("waveform") or stored.get("waveform"):
        feat_id = "waveform"
    elif stored.get("kind"):
        try:
            feature_cfg = FeatureConfig.from_dict({k: v for k, v in stored.items() if k != "waveform"})
        except ConfigError as e:
            raise ConfigError(f"--init-from: the model's feature settings: {e.message}", path=file) from None
        feat_id = feature_cfg.feat_id()
    else:  # trained from a Kaldi feats.scp without settings: only its id is known
        feat_id = str(ckpt.get("feat_id") or "unknown")
    return InitSource(file, sha256_file(file), ckpt, feature_cfg, feat_id)


def adopt_model_section(cfg: dict, src: InitSource) -> dict:
    """``cfg`` with its model section replaced by the checkpoint's options (rule in the module doc)."""
    from pyspeaker.models import canonical_name
    from pyspeaker.training.config import DEFAULTS

    ours, theirs, default = cfg["model"], src.model_options, DEFAULTS["model"]
    given = {k: v for k, v in ours.items() if k not in default or v != default[k]}
    if given:
        name = canonical_name(str(ours["name"]))
        if name != canonical_name(str(theirs["name"])):
            raise ConfigError(f"the config's model is {ours['name']} but --init-from {src.path} holds a "
                              f"{theirs['name']} model; {_MODEL_SECTION_HINT}")
        for key, value in given.items():
            if key != "name" and theirs.get(key) != value:
                have = repr(theirs[key]) if key in theirs else "not set"
                raise ConfigError(f"model.{key} is {value!r} in the config but {have} in the --init-from model "
                                  f"{src.path}; {_MODEL_SECTION_HINT}")
    out = copy.deepcopy(cfg)
    out["model"] = copy.deepcopy(theirs)
    return out


def _store_info(features) -> tuple[str, str | None]:
    """(feat_id, data dir it was made from, when the manifest says) of a training feature store."""
    from pyspeaker.training.data import open_features

    store = open_features(features, in_memory=False)
    manifest = Path(store.dir) / "manifest.json"
    data_dir = None
    if manifest.is_file():
        try:
            data_dir = json.loads(manifest.read_text()).get("data_dir")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            data_dir = None
    return store.feat_id, data_dir


def front_end(cfg: dict, src: InitSource, features, data_dir, exp_dir: Path, write: bool = True):
    """Check that the training data feed the model its own front-end; returns the FeatureConfig to
    compute features from audio with (None: a feature store, or a waveform model). ``write``: write
    the model's Kaldi conf files into ``exp_dir`` for the advice of a mismatch (first process only)."""
    from pyspeaker.features.config import write_kaldi_confs
    from pyspeaker.training.config import DEFAULTS
    from pyspeaker.training.data import feature_config_from

    d = cfg["data"]
    if src.waveform:
        if features is not None:
            raise ConfigError(f"--init-from {src.path} is a waveform model (it computes its own features from the "
                              f"samples): train it from audio with --data-dir instead of the feature store {features}")
        if d["feat_conf"]:
            raise ConfigError(f"--init-from {src.path} is a waveform model (it computes its own features): leave "
                              "data.feat_conf unset")
        return None
    if features is not None:
        have, made_from = _store_info(features)
        if have == src.feat_id:
            return None
        advice = ""
        if src.feature_cfg is not None:
            args = None
            if write:
                exp_dir.mkdir(parents=True, exist_ok=True)
                args = write_kaldi_confs(src.feature_cfg, exp_dir, "init")
            if args:
                data = made_from or "DATA_DIR"
                advice = (f"; make matching features with 'pyspeaker make-features --data-dir {data} "
                          f"{' '.join(args)}' (the model's settings, written to {args[1]}), or train from audio "
                          f"with --data-dir (the model's features are then computed on the fly)")
            else:
                advice = "; train from audio with --data-dir (the model's features are then computed on the fly)"
        raise ConfigError(f"the feature store {features} holds features {have or '(no id)'} but the --init-from model "
                          f"{src.path} takes {src.feat_id}{advice}")
    # audio: the model's own features, computed on the fly
    if src.feature_cfg is None:
        if not d["feat_conf"]:
            raise ConfigError(f"--init-from {src.path} was trained from features without their settings "
                              f"({src.feat_id}, a Kaldi feats.scp): give the Kaldi feature config they were made "
                              "with (--set data.feat_conf=...) or train from that feature store")
        log.warning("--init-from %s: its feature settings are unknown; trusting data.feat_conf %s to be the ones "
                    "it was trained with", src.path, d["feat_conf"])
        return feature_config_from(cfg)
    if d["feat_conf"]:
        given = feature_config_from(cfg)
        if given.feat_id() != src.feat_id:
            raise ConfigError(f"data.feat_conf {d['feat_conf']} (with data.cmn / data.vad) gives features "
                              f"{given.feat_id()} but the --init-from model {src.path} takes {src.feat_id}: leave "
                              "data.feat_conf unset (the model's own feature settings are used)")
    else:
        fc = src.feature_cfg
        for key, ours, theirs in (("cmn", d["cmn"], fc.cmn), ("vad", bool(d["vad"]), fc.vad)):
            if ours != DEFAULTS["data"][key] and ours != theirs:
                raise ConfigError(f"data.{key} is {ours!r} but the --init-from model {src.path} was trained with "
                                  f"{theirs!r}: leave data.{key} unset (the model's own feature settings are used)")
    return src.feature_cfg


def load_weights(model: nn.Module, src: InitSource) -> None:
    try:
        model.load_state_dict(src.ckpt["model"], strict=True)
    except RuntimeError as e:
        raise DataError(f"--init-from: the checkpoint's weights do not fit its model options: "
                        f"{str(e).strip().splitlines()[0]}", path=src.path) from None


def resume_problem(saved: dict | None, src: InitSource | None) -> str | None:
    """Why an epoch checkpoint (its ``init_from``: ``saved``) is not the run ``--init-from`` asks for."""
    if saved is None and src is None:
        return None
    if saved is None:
        return f"that run did not start from --init-from {src.path}"
    if src is None:
        return f"that run started from --init-from {saved.get('path')}: give it again to resume"
    if saved.get("sha256") != src.sha256:
        return f"that run started from another --init-from file ({saved.get('path')}, sha256 {saved.get('sha256')})"
    return None


# ----------------------------------------------------------------------------- train.freeze

def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def top_level_names(model: nn.Module) -> list[str]:
    """The first components of the network's parameter names (its top-level modules and parameters)."""
    seen: dict[str, None] = {}
    for name, _ in model.named_parameters():
        seen.setdefault(name.split(".", 1)[0], None)
    return list(seen)


def freeze(model: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """Freeze the parameters under ``prefixes`` (see the module doc); returns the modules to keep in
    eval mode while training."""
    if not prefixes:
        return []
    names = [n for n, _ in model.named_parameters()]
    frozen: set[str] = set()
    for prefix in prefixes:
        hits = [n for n in names if _matches(n, prefix)]
        if not hits:
            raise ConfigError(f"train.freeze: {prefix!r} matches no parameter of the network; its parameter names "
                              f"start with: {', '.join(top_level_names(model))} (prefixes of the names "
                              f"network.named_parameters() gives, e.g. {names[0]})")
        frozen.update(hits)
    if len(frozen) == len(names):
        raise ConfigError(f"train.freeze ({', '.join(prefixes)}) freezes every parameter of the network: nothing "
                          "would learn; leave some of it trainable")
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    keep_eval = []
    for name, module in model.named_modules():
        if not name:
            continue
        params = list(module.parameters())
        if any(_matches(name, p) for p in prefixes) or (params and not any(p.requires_grad for p in params)):
            keep_eval.append(module)
    return keep_eval


def count(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()) - trainable
