"""SpeechBrain speaker encoders (the ``spkrec-ecapa-voxceleb`` layout) as pyspeaker models.

A SpeechBrain pretrained speaker model is a folder::

    hyperparams.yaml         HyperPyYAML: compute_features (Fbank), mean_var_norm (sentence mean
                             normalisation), embedding_model (ECAPA_TDNN), mean_var_norm_emb, classifier
    embedding_model.ckpt     the ECAPA_TDNN state dict (torch.save of module.state_dict())
    mean_var_norm_emb.ckpt   the embeddings' global statistics {count, glob_mean, glob_std, ...}
    classifier.ckpt          the training loss's speaker weights (not part of the embedding)

:func:`import_speechbrain` makes it a :class:`~pyspeaker.models.speechbrain_ecapa.SpeechBrainECAPA`
computing what ``EncoderClassifier.encode_batch`` computes (with ``normalize=True`` when the
embedding statistics are given). The hyperparameters are read from ``hyperparams.yaml`` without
SpeechBrain: its tags (``!new:``, ``!ref``, ``!name:`` ...) are kept as markers, ``!ref``
references are resolved, and only the values the model needs are used; settings the pyspeaker
model does not reproduce (deltas, std normalisation of the features, another activation) are
refused rather than imported wrongly. Without the file, spkrec-ecapa-voxceleb's values are used.
"""
from __future__ import annotations

import ast
import operator
import os
import re
from pathlib import Path

import torch

from pyspeaker.compat.importing import Imported, load_torch_file, map_state
from pyspeaker.fileio import sha256_file
from pyspeaker.errors import ConfigError, DataError

# spkrec-ecapa-voxceleb's hyperparams.yaml (SpeechBrain's ECAPA_TDNN and Fbank defaults elsewhere)
SPKREC_ECAPA = {"n_mels": 80, "nOut": 192, "channels": [1024, 1024, 1024, 1024, 3072],
                "kernel_sizes": [5, 3, 3, 3, 1], "dilations": [1, 2, 3, 4, 1], "attention_channels": 128}
# ECAPA_TDNN keyword -> SpeechBrainECAPA keyword (same name unless listed)
_ECAPA_KEYS = {"input_size": "n_mels", "lin_neurons": "nOut", "channels": "channels", "kernel_sizes": "kernel_sizes",
               "dilations": "dilations", "attention_channels": "attention_channels",
               "res2net_scale": "res2net_scale", "se_channels": "se_channels", "global_context": "global_context",
               "groups": "groups"}
_ECAPA_IGNORED = {"device", "dropout"}  # where the weights live; dropout is the identity in inference
_FBANK_KEYS = ("sample_rate", "n_fft", "n_mels", "win_length", "hop_length", "f_min", "f_max", "filter_shape")
_FBANK_IGNORED = {"param_change_factor", "param_rand_factor", "left_frames", "right_frames"}  # training / context only


# ---- hyperparams.yaml -----------------------------------------------------------------------
class _Tagged(dict):
    """A tagged HyperPyYAML mapping (``!new:module.Class``): its keywords, with the tag kept."""

    def __init__(self, tag: str, values: dict):
        super().__init__(values)
        self.tag = tag


class _Ref(str):
    """A ``!ref`` value, resolved against the whole file after loading."""


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node, tag_prefix="!"):
        tag = tag_prefix + suffix
        if isinstance(node, yaml.MappingNode):
            return _Tagged(tag, loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_scalar(node)
        if tag == "!ref":
            return _Ref(value)
        return _Tagged(tag, {}) if value == "" else _Tagged(tag, {"_value": value})

    Loader.add_multi_constructor("!", construct)
    Loader.add_multi_constructor("tag:yaml.org,2002:python/",
                                 lambda ld, sfx, nd: construct(ld, sfx, nd, tag_prefix="!!python/"))
    return Loader


_REF = re.compile(r"<([^<>]+)>")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg,
        ast.UAdd: operator.pos}


def _arith(text: str):
    """The value of a plain arithmetic expression on numbers (what ``!ref <a> * 2`` may hold), else None."""
    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.operand))
        raise ValueError(text)

    try:
        return ev(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, RecursionError):
        return None


def _lookup(root: dict, name: str, path, seen: tuple):
    value = root
    for part in re.split(r"[.\[\]]+", name.strip()):
        if not part:
            continue
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise DataError(f"hyperparams: !ref <{name}> names nothing in the file", path=path)
    return _resolve(value, root, path, seen + (name,))


def _resolve(value, root: dict, path, seen: tuple = ()):
    if isinstance(value, _Ref):
        refs = _REF.findall(value)
        if any(r in seen for r in refs):
            raise DataError(f"hyperparams: circular !ref through <{refs[0]}>", path=path)
        whole = _REF.fullmatch(value.strip())
        if whole:
            return _lookup(root, whole.group(1), path, seen)
        text = _REF.sub(lambda m: str(_lookup(root, m.group(1), path, seen)), value)
        number = _arith(text)
        return text if number is None else number
    if isinstance(value, _Tagged):
        return _Tagged(value.tag, {k: _resolve(v, root, path, seen) for k, v in value.items()})
    if isinstance(value, dict):
        return {k: _resolve(v, root, path, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, path, seen) for v in value]
    return value


def read_hyperparams(path: str | os.PathLike) -> dict:
    """``hyperparams.yaml`` as plain data: tagged mappings keep their tag (``.tag``), ``!ref``s resolved."""
    import yaml

    try:
        text = Path(path).read_text()
        root = yaml.load(text, Loader=_loader())  # a SafeLoader that only marks tags
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read as a SpeechBrain hyperparams.yaml: {first}", path=path) from None
    if not isinstance(root, dict):
        raise DataError("a SpeechBrain hyperparams.yaml is a mapping at the top level", path=path)
    return _resolve(root, root, path)


def _plain(value):
    """JSON-able copy of a resolved hyperparams value (tags as ``{"_tag": ...}``)."""
    if isinstance(value, _Tagged):
        return {"_tag": value.tag, **{k: _plain(v) for k, v in value.items()}}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _section(hp: dict, name: str, cls: str, path, required: bool = True):
    """The ``!new:`` mapping the encoder uses as ``name`` (``modules[name]``, else the top-level key)."""
    modules = hp.get("modules") if isinstance(hp.get("modules"), dict) else {}
    value = modules.get(name, hp.get(name))
    if value is None:
        if required:
            raise DataError(f"hyperparams: no {name} (a {cls}) in the file", path=path)
        return None
    if not isinstance(value, _Tagged) or not value.tag.startswith("!new:") or not value.tag.endswith("." + cls):
        tag = value.tag if isinstance(value, _Tagged) else type(value).__name__
        raise ConfigError(f"hyperparams: {name} is {tag}, pyspeaker imports a SpeechBrain {cls} there", path=path)
    return value


def _is_relu(value) -> bool:
    return isinstance(value, _Tagged) and value.tag in ("!name:torch.nn.ReLU", "!!python/name:torch.nn.ReLU")


def options_from_hyperparams(hp: dict, path=None) -> tuple[dict, dict]:
    """(SpeechBrainECAPA keywords, embedding-norm settings) from a read hyperparams.yaml; ConfigError
    for what the pyspeaker model does not compute."""
    ecapa = _section(hp, "embedding_model", "ECAPA_TDNN", path)
    fbank = _section(hp, "compute_features", "Fbank", path)
    norm = _section(hp, "mean_var_norm", "InputNormalization", path)
    emb = _section(hp, "mean_var_norm_emb", "InputNormalization", path, required=False)
    opts: dict = {}
    for key, value in ecapa.items():
        if key in _ECAPA_KEYS:
            opts[_ECAPA_KEYS[key]] = value
        elif key == "activation":
            if not _is_relu(value):
                raise ConfigError(f"hyperparams: embedding_model activation {_plain(value)} is not supported "
                                  "(pyspeaker's SpeechBrainECAPA uses ReLU)", path=path)
        elif key not in _ECAPA_IGNORED:
            raise ConfigError(f"hyperparams: embedding_model option {key} is not supported", path=path)
    if "input_size" not in ecapa:
        raise DataError("hyperparams: embedding_model has no input_size", path=path)
    for key in ("deltas", "context", "requires_grad"):
        if fbank.get(key):
            raise ConfigError(f"hyperparams: compute_features {key}: true is not supported", path=path)
    for key, value in fbank.items():
        if key in _FBANK_KEYS:
            if key == "n_mels":
                continue
            opts[key] = value
        elif key not in _FBANK_IGNORED | {"deltas", "context", "requires_grad"}:
            raise ConfigError(f"hyperparams: compute_features option {key} is not supported", path=path)
    fbank_mels = fbank.get("n_mels", 40)  # Fbank's own default
    if int(fbank_mels) != int(opts["n_mels"]):
        raise ConfigError(f"hyperparams: compute_features gives {fbank_mels} mel bins but embedding_model's "
                          f"input_size is {opts['n_mels']}", path=path)
    if norm.get("norm_type", "global") != "sentence" or norm.get("std_norm", True) is not False:
        raise ConfigError("hyperparams: mean_var_norm must be norm_type: sentence with std_norm: false (what "
                          f"spkrec-ecapa-voxceleb uses); got {_plain(norm)}", path=path)
    emb_settings = {}
    if emb is not None:
        if emb.get("norm_type", "global") != "global":
            raise ConfigError(f"hyperparams: mean_var_norm_emb norm_type {emb.get('norm_type')} is not supported "
                              "(global only)", path=path)
        emb_settings = {"std_norm": bool(emb.get("std_norm", True))}
    return opts, emb_settings


# ---- checkpoints ----------------------------------------------------------------------------
def _load(path: Path, what: str) -> dict:
    obj = load_torch_file(path, f"SpeechBrain {what}")
    if not isinstance(obj, dict):
        raise DataError(f"a SpeechBrain {what} is a dict, this file holds a {type(obj).__name__}", path=path)
    return obj


def _embedding_stats(path: Path, dim: int, std_norm: bool) -> tuple[dict, dict]:
    """(buffers of the embedding norm, source keys left out and why) from ``mean_var_norm_emb.ckpt``."""
    stats = _load(path, "mean_var_norm_emb checkpoint")
    wanted = ["glob_mean"] + (["glob_std"] if std_norm else [])
    state, dropped = {}, {}
    for key in wanted:
        value = stats.get(key)
        if not isinstance(value, torch.Tensor):
            raise DataError(f"the embedding statistics have no {key} tensor", path=path)
        if value.numel() != dim or any(s != 1 for s in value.shape[:-1]):
            raise DataError(f"{key}: shape {list(value.shape)}, but the {dim}-dim embedding needs [{dim}]", path=path)
        state[f"emb_norm.{key}"] = value.detach().reshape(dim).float().clone()
    for key in stats:
        if key == "count":
            dropped[key] = "how many embeddings the statistics were computed on: not used in inference"
        elif key == "glob_std" and not std_norm:
            dropped[key] = "mean_var_norm_emb has std_norm: false, so the embeddings are not divided by it"
        elif key.startswith("spk_dict_"):
            dropped[key] = "per-speaker statistics of an old SpeechBrain version: unused by global normalisation"
        elif key not in wanted:
            raise DataError(f"the embedding statistics hold an unknown key {key}", path=path)
    return state, dropped


def import_speechbrain(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None, *,
                       embedding_norm: str | os.PathLike | None = None) -> Imported:
    """A SpeechBrain ECAPA speaker encoder as an :class:`Imported` SpeechBrainECAPA.

    ``checkpoint``: ``embedding_model.ckpt`` (or the model folder holding it, whose
    ``hyperparams.yaml`` is then read unless ``config`` is given). ``config``: the
    ``hyperparams.yaml`` (default: spkrec-ecapa-voxceleb's values). ``embedding_norm``: a
    ``mean_var_norm_emb.ckpt`` whose mean is then subtracted from every embedding, as
    ``encode_batch(normalize=True)`` does (SpeechBrain's default, ``normalize=False``, leaves it out).
    Every tensor must fit the model (DataError naming the key and both shapes otherwise).
    """
    from pyspeaker.models import build_model

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        folder = checkpoint
        checkpoint = folder / "embedding_model.ckpt"
        if config is None and (folder / "hyperparams.yaml").is_file():
            config = folder / "hyperparams.yaml"
    source = _load(checkpoint, "embedding_model checkpoint")
    if any(not isinstance(k, str) or not isinstance(v, torch.Tensor) for k, v in source.items()):
        raise DataError("a SpeechBrain embedding_model.ckpt is a state dict (names -> tensors); this one holds "
                        "other things", path=checkpoint)
    if config is not None:
        hp = read_hyperparams(config)
        opts, emb_settings = options_from_hyperparams(hp, config)
        source_config = {"file": os.fspath(Path(config).resolve()), "sha256": sha256_file(config),
                         **{k: _plain(v) for k, v in hp.items()
                            if k in ("compute_features", "mean_var_norm", "embedding_model", "mean_var_norm_emb")}}
    else:
        opts, emb_settings = dict(SPKREC_ECAPA), {"std_norm": False}
        source_config = {"file": None, "assumed": "spkrec-ecapa-voxceleb hyperparameters", **SPKREC_ECAPA}
    notes: dict = {}
    if embedding_norm is not None:
        opts["embedding_norm"] = True
        opts["embedding_std_norm"] = bool(emb_settings.get("std_norm", False))
    options = {"name": "SpeechBrainECAPA", "waveform": True, **opts}
    try:
        # the network without the embedding statistics (they come from their own file)
        net = build_model(**{**options, "embedding_norm": False, "embedding_std_norm": False})
    except ConfigError as e:
        raise ConfigError(e.message, path=config) from None
    try:
        # SpeechBrain's key names are the model's: the mapping is the identity, checked tensor by tensor
        state = map_state(source, net, lambda k: k, path=checkpoint)
    except DataError as e:
        hint = "" if config is not None else " (spkrec-ecapa-voxceleb's hyperparameters assumed: give its hyperparams.yaml)"
        raise DataError(e.message + hint, path=checkpoint) from None
    dropped: dict[str, str] = {}
    if embedding_norm is not None:
        emb_state, emb_dropped = _embedding_stats(Path(embedding_norm), int(opts["nOut"]),
                                                  bool(opts["embedding_std_norm"]))
        state.update(emb_state)
        dropped.update({f"mean_var_norm_emb.{k}": why for k, why in emb_dropped.items()})
        notes["embedding_norm"] = {"file": os.fspath(Path(embedding_norm).resolve()),
                                   "sha256": sha256_file(embedding_norm),
                                   "std_norm": bool(opts["embedding_std_norm"])}
    return Imported("speechbrain", options, {"waveform": True}, state, checkpoint, source_config=source_config,
                    dropped=dropped, notes=notes)
