"""Training configuration: YAML file merged over defaults, plus ``--set key=value`` overrides.

Unknown keys are refused (a typo must not silently fall back to a default). Values the data
determine (number of speakers, feature dimension) are never part of the config. The loss and the
batch layout are checked together when the config loads: ``data.nPerSpeaker`` left at ``null``
becomes what the loss needs; an explicit value the loss cannot use is refused with the setting
to change.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from pyspeaker.errors import ConfigError

DEFAULTS: dict = {
    # other keys are the chosen model's own options (n_mels, channels, ...); ``waveform: true``
    # puts voxceleb_trainer's waveform front-end in the network (training from audio only),
    # ``log_input`` applies to it.
    "model": {"name": "ResNetSE34L", "encoder_type": "SAP", "nOut": 512, "input_norm": "instance"},
    "loss": {"name": "amsoftmax"},  # other keys are the chosen loss's own options (margin, scale, ...)
    "data": {
        "crop_frames": 200,      # random training crop length (frames)
        "batch_size": 64,        # speakers per optimiser step and process (each nPerSpeaker crops)
        "nPerSpeaker": None,     # crops of each speaker in a batch; null = what the loss needs
        "max_seg_per_spk": 0,    # use at most this many utterances of a speaker per epoch (0 = all)
        "unique_speakers": True,  # no speaker twice in a batch
        "num_workers": 0,        # DataLoader worker processes
        "in_memory": True,       # load the whole training store into RAM (fast random crops)
        # training from audio (--data-dir) with features computed on the fly:
        "feat_conf": None,       # Kaldi option file (conf/fbank.conf, mfcc, logmel); not with model.waveform
        "cmn": "none",           # none | utterance | sliding (per crop), as make-features --cmn
        "vad": False,
        "vad_conf": None,
        "audio_bank": False,     # crops sliced from a memory-mapped copy of the training audio (float32, made
                                 # once into augment.bank_dir, reused while the files stay the same): no file
                                 # opened per crop; the copy is twice the size of 16-bit WAVs
    },
    "augment": {                 # on-the-fly augmentation (waveform kinds need training from audio)
        "noise_dir": None,       # MUSAN layout (noise/, music/, speech/) or a data dir of MUSAN files
        "rir_dir": None,         # room impulse responses: a folder of WAVs or a data dir
        "bank_dir": None,        # where noise / RIR banks are kept (null: $PYSPEAKER_CACHE/banks or ~/.cache/pyspeaker/banks)
        "prob": 0.6,             # chance that a crop gets one waveform augmentation
        "noise_snr": [0, 15],    # SNR ranges in dB, as the VoxCeleb recipes
        "music_snr": [5, 15],
        "babble_snr": [13, 20],
        "babble_speakers": [3, 7],
        "speed_perturb": False,  # speed copies of every utterance, each a new speaker (sp0.9-<spk>, ...)
        "speed_factors": [0.9, 1.0, 1.1],  # Kaldi's; more factors = more pseudo-speakers for tiny corpora
        "specaugment": False,    # frequency and time masks on the features
        "freq_masks": 1,
        "freq_width": 8,         # at most this many bins per mask
        "time_masks": 1,
        "time_width": 10,        # at most this many frames per mask
    },
    "optim": {
        "name": "adam",          # adam | sgd
        "lr": 0.001,
        "weight_decay": 0.0,
        "momentum": 0.9,         # sgd only
        "scheduler": "step",     # step | exponential | cosine
        "lr_decay": 0.95,        # step: multiplied into lr every `step_epochs` epochs; exponential: per epoch
        "step_epochs": 1,
        "min_lr": 0.0,           # cosine: the lr at the end of training
        "warmup_epochs": 0,      # linear warm-up of the lr from 0 (may be fractional)
        "margin_warmup_epochs": 0,  # margin losses: margin grows linearly from 0 over these epochs
    },
    "train": {
        "max_epoch": 20,
        "seed": 0,
        "grad_clip": 0.0,        # max gradient norm (0 = off)
        "device": "auto",
        "mixedprec": False,      # float16 autocast + gradient scaling (CUDA only)
        "test_interval": 0,      # validate every N epochs (needs valid.trials); 0 = never
        "keep_last": 0,          # keep only the last K epoch checkpoints (0 = all; those `select` needs stay)
        # time budget in minutes (0 = none): training stops at the first step after it (that epoch is
        # closed as a partial one) and the lr / margin schedules run on time, their epoch axis
        # stretched over the budget (schedule epoch = max_epoch * elapsed / budget); max_epoch is
        # then an upper bound
        "max_minutes": 0,
        # what final.pt is: last (the last epoch), best (the epoch of lowest validation EER, needs
        # valid.trials and test_interval), average (the mean of the last `average_last` epochs)
        "select": "last",
        "average_last": 5,
        "channels_last": True,   # NHWC memory layout for 2-D conv networks on CPU (faster with oneDNN)
        # fine-tuning (mostly with `train --init-from`): prefixes of the network's parameter names as
        # network.named_parameters() gives them (e.g. [tdnn1, tdnn2]; [model.layer1] behind a waveform
        # front-end): those parameters are not trained, and every module under a prefix stays in eval
        # mode (BatchNorm statistics and dropout fixed); [] = train everything
        "freeze": [],
    },
    "valid": {
        "trials": None,          # Kaldi or VoxCeleb trial list of validation utterances
        "features": None,        # their feature store (when training from a store) ...
        "data_dir": None,        # ... or their data dir (when training from audio)
        "p_target": 0.01,
    },
}

# Sections whose top level takes per-family options beyond the common ones above.
_OPEN_SECTIONS = ("model", "loss")
SCHEDULERS = ("step", "exponential", "cosine")
SELECT_RULES = ("last", "best", "average")
CMN_MODES = ("none", "utterance", "sliding")

# voxceleb_trainer's trainSpeakerNet.py flags -> config keys (``pyspeaker train --model ...``)
VT_ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("model.name",),
    "encoder_type": ("model.encoder_type",),
    "nOut": ("model.nOut",),
    "n_mels": ("model.n_mels",),
    "log_input": ("model.log_input",),
    "trainfunc": ("loss.name",),
    "scale": ("loss.scale",),
    "margin": ("loss.margin",),
    "nPerSpeaker": ("data.nPerSpeaker",),
    "batch_size": ("data.batch_size",),
    "max_frames": ("data.crop_frames",),
    "max_seg_per_spk": ("data.max_seg_per_spk",),
    "nDataLoaderThread": ("data.num_workers",),
    "max_epoch": ("train.max_epoch",),
    "seed": ("train.seed",),
    # voxceleb_trainer also decays the lr every test_interval epochs
    "test_interval": ("train.test_interval", "optim.step_epochs"),
    "optimizer": ("optim.name",),
    "lr": ("optim.lr",),
    "lr_decay": ("optim.lr_decay",),
    "weight_decay": ("optim.weight_decay",),
}


def alias_overrides(values: dict) -> list[str]:
    """``--set`` strings for the voxceleb_trainer flags given (None = not given)."""
    out = []
    for flag, value in values.items():
        if value is None:
            continue
        if flag == "log_input" and isinstance(value, str):  # voxceleb_trainer takes True/False
            value = value.strip().lower() in ("true", "1", "yes")
        for key in VT_ALIASES[flag]:
            out.append(f"{key}={value}")
    return out


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
    try:
        return _build(copy.deepcopy(user), overrides, path)
    except ConfigError as e:
        if not overrides:
            raise
        try:  # is the file fine on its own? then the --set values are to blame, not the file
            _build(user, [], path)
        except ConfigError:
            raise e from None
        named = [t for t in overrides if _fails(user, [t], path)] or list(overrides)
        raise ConfigError(f"--set {' '.join(named)}: {e.message}") from None


def _fails(user: dict, overrides, path: Path | None) -> bool:
    try:
        _build(copy.deepcopy(user), overrides, path)
    except ConfigError:
        return True
    return False


def _build(user: dict, overrides, path: Path | None) -> dict:
    file_loss = dict(user.get("loss") or {}) if isinstance(user.get("loss"), dict) else {}
    overridden: set[tuple[str, ...]] = set()
    for text in overrides:
        keys, value = parse_override(text)
        node = user
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{k} is not a section")
        node[keys[-1]] = value
        overridden.add(tuple(keys))
    _drop_options_of_replaced_loss(user, file_loss, overridden)
    cfg = _merge(DEFAULTS, user, "", None if path is None else str(path))
    _validate(cfg, path)
    return cfg


def _drop_options_of_replaced_loss(user: dict, file_loss: dict, overridden: set[tuple[str, ...]]) -> None:
    """A loss chosen on the command line does not inherit the file's options for another loss
    (``--set loss.name=angleproto`` over a file with amsoftmax's margin and scale); options given
    on the command line are still checked against the chosen loss."""
    from pyspeaker.losses import LOSS_NAMES, loss_options

    loss = user.get("loss")
    if ("loss", "name") not in overridden or not isinstance(loss, dict) or loss.get("name") not in LOSS_NAMES:
        return
    if loss["name"] == file_loss.get("name", DEFAULTS["loss"]["name"]):
        return
    accepted = set(loss_options(loss["name"]))
    for key in list(loss):
        if key != "name" and key in file_loss and ("loss", key) not in overridden and key not in accepted:
            del loss[key]


def _positive_int(cfg: dict, section: str, key: str, path, minimum: int = 1) -> None:
    value = cfg[section][key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{section}.{key} must be {what}, got {value!r}", path=path)


def _number(cfg: dict, section: str, key: str, path, minimum: float = 0.0) -> float:
    value = cfg[section][key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{section}.{key} must be a number >= {minimum:g}, got {value!r}", path=path)
    return float(value)


def _range(cfg: dict, section: str, key: str, path) -> None:
    value = cfg[section][key]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{section}.{key} must be a range [low, high], got {value!r}", path=path)
    if value[0] > value[1]:
        raise ConfigError(f"{section}.{key} is [{value[0]:g}, {value[1]:g}]: the minimum is above the maximum",
                          path=path)


def _validate(cfg: dict, path) -> None:
    from pyspeaker.losses import check_batch_layout, check_loss_options, loss_class
    from pyspeaker.models import canonical_name

    d, o, t, a = cfg["data"], cfg["optim"], cfg["train"], cfg["augment"]
    try:
        canonical_name(cfg["model"]["name"])
    except ConfigError as e:  # checked here, so the message says where the name came from
        raise ConfigError(e.message, path=path) from None
    for section, key in (("data", "crop_frames"), ("data", "batch_size"), ("train", "max_epoch")):
        _positive_int(cfg, section, key, path)
    for section, key in (("data", "max_seg_per_spk"), ("data", "num_workers"), ("train", "test_interval"),
                         ("train", "keep_last"), ("augment", "freq_masks"), ("augment", "time_masks"),
                         ("augment", "freq_width"), ("augment", "time_width")):
        _positive_int(cfg, section, key, path, minimum=0)
    if o["name"] not in ("adam", "sgd"):
        raise ConfigError(f"unknown optimiser {o['name']!r}; valid: adam, sgd", path=path)
    if isinstance(o["lr"], bool) or not isinstance(o["lr"], (int, float)) or o["lr"] <= 0:
        raise ConfigError(f"optim.lr must be > 0, got {o['lr']}", path=path)
    if o["scheduler"] not in SCHEDULERS:
        raise ConfigError(f"unknown optim.scheduler {o['scheduler']!r}; valid: {', '.join(SCHEDULERS)}", path=path)
    for key in ("weight_decay", "momentum", "lr_decay", "min_lr", "warmup_epochs", "margin_warmup_epochs"):
        _number(cfg, "optim", key, path)
    _positive_int(cfg, "optim", "step_epochs", path)
    _number(cfg, "train", "grad_clip", path)
    _number(cfg, "train", "max_minutes", path)
    if t["select"] not in SELECT_RULES:
        raise ConfigError(f"train.select must be one of {', '.join(SELECT_RULES)}, got {t['select']!r}", path=path)
    _positive_int(cfg, "train", "average_last", path)
    if t["select"] == "best" and not (cfg["valid"]["trials"] and t["test_interval"]):
        raise ConfigError("train.select=best picks the epoch of lowest validation EER: it needs validation "
                          "(--set valid.trials=TRIALS --set train.test_interval=N, and valid.features or "
                          "valid.data_dir)", path=path)
    if t["device"] not in ("auto", "cpu", "cuda") and not str(t["device"]).startswith("cuda:"):
        raise ConfigError(f"train.device must be auto, cpu or cuda[:N], got {t['device']!r}", path=path)
    if d["cmn"] not in CMN_MODES:
        raise ConfigError(f"data.cmn must be one of {', '.join(CMN_MODES)}, got {d['cmn']!r}", path=path)
    if not 0.0 <= _number(cfg, "augment", "prob", path) <= 1.0:
        raise ConfigError(f"augment.prob must be in [0, 1], got {a['prob']}", path=path)
    for key in ("noise_snr", "music_snr", "babble_snr", "babble_speakers"):
        _range(cfg, "augment", key, path)
    factors = a["speed_factors"]
    if (not isinstance(factors, (list, tuple)) or not factors or len(set(factors)) != len(factors)
            or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0.5 <= f <= 2.0 for f in factors)):
        raise ConfigError(f"augment.speed_factors must be a list of distinct factors in [0.5, 2], got {factors!r}",
                          path=path)
    if a["babble_speakers"][0] < 1:
        raise ConfigError("augment.babble_speakers must be at least 1", path=path)
    freeze = t["freeze"]
    if freeze is None or isinstance(freeze, str):
        freeze = [] if freeze is None else [freeze]
    if not isinstance(freeze, (list, tuple)) or not all(isinstance(p, str) and p.strip(". ") for p in freeze):
        raise ConfigError(f"train.freeze must be a list of parameter-name prefixes (e.g. [tdnn1, tdnn2]), "
                          f"got {freeze!r}", path=path)
    t["freeze"] = [p.strip().strip(".") for p in freeze]
    if not 0.0 < float(cfg["valid"]["p_target"]) < 1.0:
        raise ConfigError(f"valid.p_target must be in (0, 1), got {cfg['valid']['p_target']}", path=path)
    if cfg["model"].get("waveform") and d["feat_conf"]:
        raise ConfigError("model.waveform computes its own features: leave data.feat_conf unset", path=path)

    # the loss, its options and the batch layout it needs
    loss = dict(cfg["loss"])
    name = loss.pop("name")
    cls = loss_class(name)
    check_loss_options(name, loss)
    if d["nPerSpeaker"] is None:
        d["nPerSpeaker"] = cls.utts_per_speaker
    _positive_int(cfg, "data", "nPerSpeaker", path)
    check_batch_layout(name, d["nPerSpeaker"])
    for key in ("unique_speakers", "audio_bank"):
        if not isinstance(d[key], bool):
            raise ConfigError(f"data.{key} must be true or false, got {d[key]!r}", path=path)
    if not d["unique_speakers"] and cls.utts_per_speaker > 1:
        # the losses that need several utterances per row are the metric ones: a row's negatives
        # are the other rows, so a repeated speaker would be pushed away from itself
        raise ConfigError(f"loss {name} compares the speakers of a batch with each other (each row's negatives are "
                          f"the other rows), so a speaker must not appear twice: data.unique_speakers must be true "
                          f"(--set data.unique_speakers=true)", path=path)
    if o["margin_warmup_epochs"] and not cls.has_margin:
        raise ConfigError(f"optim.margin_warmup_epochs applies to margin losses (amsoftmax, aamsoftmax); "
                          f"loss {name} has no softmax margin: set --set optim.margin_warmup_epochs=0", path=path)


# Settings that may change when a run is resumed (the rest must match the checkpoint's).
RESUMABLE_CHANGES = {("train", "max_epoch"), ("train", "device"), ("train", "test_interval"), ("train", "keep_last"),
                     ("data", "num_workers"), ("data", "in_memory"), ("data", "audio_bank"), ("train", "channels_last"),
                     ("train", "select"), ("train", "average_last"),
                     ("valid", "trials"), ("valid", "features"), ("valid", "data_dir"), ("valid", "p_target")}


def resume_mismatch(saved: dict, cfg: dict) -> str | None:
    """The first setting in which ``cfg`` differs from a checkpoint's config, or None. A setting the
    checkpoint's config lacks (made before the setting existed) counts as its default."""
    for section in sorted(set(saved) | set(cfg)):
        a, b = saved.get(section, {}), cfg.get(section, {})
        for key in sorted(set(a) | set(b)):
            if (section, key) in RESUMABLE_CHANGES:
                continue
            old = a.get(key, DEFAULTS.get(section, {}).get(key) if section not in _OPEN_SECTIONS else None)
            if old != b.get(key):
                return f"{section}.{key} is {b.get(key)!r} here but {old!r} in the checkpoint"
    return None


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
