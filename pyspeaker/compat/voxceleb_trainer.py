"""voxceleb_trainer: its checkpoints' keys and shapes mapped onto pyspeaker's models (strict
loading, export) and its front-end and evaluation settings.

voxceleb_trainer (clovaai) saves its ``SpeakerNet`` state dict: ``__S__.<key>`` for the speaker
model (raw-waveform front-end ``torchfb`` included) and ``__L__.<key>`` for the loss. A ``.model``
file is one of (see ../shared/compat/voxceleb_trainer/README.md):

- the current format: ``{"model_state_dict": ..., "optimizer_state_dict": ..., ...}``;
- the legacy format and the published files (``baseline_lite_ap.model``, ...): the bare state dict;
- ``{"model": <speaker-model state dict>}``, whose keys get ``__S__.`` prepended;
- keys with a ``module.`` (DataParallel) prefix, which is dropped where the name does not match:
  at the start of the key or right after ``__S__.`` / ``__L__.``, never inside a name.

voxceleb_trainer itself loads loosely (unknown or mis-shaped keys skipped with a warning, missing
ones left at random values). Here loading is strict: every ``__S__.`` key of the model, front-end
buffers included, must be in the file with the same shape and nothing else may be; otherwise a
DataError names the first mismatching key and both shapes. ``__L__.`` keys (the loss) are not
part of the embedding network and are ignored. As in voxceleb_trainer, the file's STFT window and
mel filterbank replace the ones the front-end computed.

Evaluation (``pyspeaker voxceleb-eval``) takes from here only the settings that differ from
pyspeaker's: :func:`eval_input` (its crops of a file), :data:`NUM_EVAL` and :data:`TEST_NORMALIZE`.
The rest is the package's own code: :func:`pyspeaker.audio.read_audio_file`,
:func:`pyspeaker.extraction.eval_crops`, :func:`pyspeaker.scoring.crops.crop_scores`,
:func:`pyspeaker.metrics.voxceleb_trainer_eer` and :func:`pyspeaker.metrics.kaldi_min_dcf`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from pyspeaker.compat.importing import all_finite
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import atomic_file
from pyspeaker.log import get_logger
from pyspeaker.models.frontend import WaveformModel, crop_samples, make_torchfb

log = get_logger(__name__)

# voxceleb_trainer models handled here, with the encoder types its code accepts for each
VT_ENCODERS: dict[str, tuple[str, ...]] = {
    "ResNetSE34L": ("SAP", "ASP"),
    "ResNetSE34V2": ("SAP", "ASP"),
    "ResNetSE34Half": ("SAP", "ASP"),
    "VGGVox": ("SAP", "TAP", "MAX"),
}
# each loss's ``test_normalize``: whether evaluation L2-normalises the embeddings before scoring
TEST_NORMALIZE: dict[str, bool] = {
    "softmax": True, "amsoftmax": True, "aamsoftmax": True, "angleproto": True,
    "softmaxproto": True, "ge2e": True, "triplet": True, "proto": False,
}
VGGVOX_MELS = 40  # voxceleb_trainer's VGGVox ignores --n_mels
NUM_EVAL = 10     # crops per file, a fixed default in voxceleb_trainer


def eval_input(audio: np.ndarray, eval_frames: int, num_eval: int = NUM_EVAL) -> np.ndarray:
    """float32 [num_eval, crop] network input for one file, as ``loadWAV(..., evalmode=True)``.

    The crop is ``eval_frames * 160 + 240`` samples; a file no longer than that is first extended
    by repeating it from its start to crop + 1 samples, and the crops start at
    ``int(linspace(0, len - crop, num_eval))`` (:func:`pyspeaker.extraction.eval_crops`).
    ``eval_frames`` 0 keeps the whole (extended) file as one row.
    """
    from pyspeaker.extraction import eval_crops

    crop = crop_samples(eval_frames)
    if eval_frames == 0:
        return eval_crops(audio, max(len(audio), crop + 1), 1, min_length=crop + 1).astype(np.float32)
    return eval_crops(audio, crop, num_eval, min_length=crop + 1).astype(np.float32)


# ----------------------------------------------------------------------------- reading checkpoints

def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The SpeakerNet state dict stored in a voxceleb_trainer ``.model`` file, and its format's name.

    Accepts every format listed in the module docstring (``module.`` prefixes are resolved later,
    against the model's keys). DataError if the file is missing, unreadable or not a state dict.
    """
    from pyspeaker.compat.importing import load_torch_file

    path = Path(path)
    ckpt = load_torch_file(path, "voxceleb_trainer checkpoint")
    if not isinstance(ckpt, Mapping):
        raise DataError(f"not a voxceleb_trainer checkpoint: it holds a {type(ckpt).__name__}, not a state dict",
                        path=path)
    if "model_options" in ckpt:
        raise DataError("this is a pyspeaker checkpoint, not a voxceleb_trainer one (use `pyspeaker extract`)",
                        path=path)
    if "model_state_dict" in ckpt:
        state, fmt = ckpt["model_state_dict"], "current format (model_state_dict)"
    else:
        state, fmt = ckpt, "bare state dict"
    if not isinstance(state, Mapping):
        raise DataError(f"not a voxceleb_trainer checkpoint: its state is a {type(state).__name__}", path=path)
    if len(state) == 1 and "model" in state and isinstance(state["model"], Mapping):
        state, fmt = {"__S__." + k: v for k, v in state["model"].items()}, fmt + " with a single 'model' entry"
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(f"not a voxceleb_trainer checkpoint: entry {key!r} is a {type(value).__name__}, "
                            "not a tensor", path=path)
    return dict(state), fmt


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def net_mels(net: nn.Module) -> int:
    return int(net.n_mels)


def strip_module(key: str) -> str:
    """``key`` without DataParallel's ``module.`` prefixes: those of a wrapped SpeakerNet
    (``module.__S__.x``) and of a wrapped speaker model or loss (``__S__.module.x``). Only
    prefixes: ``module.`` inside a name (``__S__.layer.submodule.weight``) is part of it."""
    while key.startswith("module."):
        key = key[len("module."):]
    for part in ("__S__.", "__L__."):
        if key.startswith(part + "module."):
            return part + strip_module(key[len(part):])
    return key


def guess_settings(state: Mapping[str, torch.Tensor]) -> dict | None:
    """voxceleb_trainer flags (model, encoder_type, nOut, n_mels) that a state dict looks like, or None."""
    names = {strip_module(k): tuple(v.shape) for k, v in state.items()}
    s = {k[len("__S__."):]: shape for k, shape in names.items() if k.startswith("__S__.")}
    fc = s.get("fc.weight")
    if fc is None or len(fc) != 2:
        return None
    stem = s.get("conv1.weight")
    if "netcnn.0.weight" in s:
        model, dim = "VGGVox", 512
    elif stem in ((16, 1, 7, 7), (32, 1, 7, 7)):
        model, dim = ("ResNetSE34L", 128) if stem[0] == 16 else ("ResNetSE34Half", 256)
    elif stem == (32, 1, 3, 3) and "attention.0.weight" in s:
        model, dim = "ResNetSE34V2", s["attention.0.weight"][1]
    else:
        return None
    attentive = "sap_linear.weight" in s or "attention.0.weight" in s
    encoder = {(True, dim): "SAP", (True, 2 * dim): "ASP", (False, dim): "TAP/MAX"}.get((attentive, fc[1]))
    fb = next((v for k, v in s.items() if k.endswith("mel_scale.fb")), None)
    return {"model": model, "encoder_type": encoder, "nOut": fc[0], "n_mels": fb[1] if fb else None}


def _describe(settings: Mapping) -> str:
    return " ".join(f"--{k} {v}" for k, v in settings.items() if v is not None)


def expected_state(model: nn.Module) -> dict[str, torch.Size]:
    """The ``__S__.`` keys and shapes a voxceleb_trainer checkpoint of ``model`` holds.

    ``model`` is a :class:`WaveformModel` or a bare network; for the latter the front-end buffers
    are those of the network's voxceleb_trainer front-end at its ``n_mels``.
    """
    if isinstance(model, WaveformModel):
        fb, net = model.torchfb, model.model
    else:
        fb, net = make_torchfb(net_mels(model), model.frontend_spec), model
    out = {f"__S__.torchfb.{k}": v.shape for k, v in fb.state_dict().items()}
    out.update({f"__S__.{k}": v.shape for k, v in net.state_dict().items()})
    return out


def match_state(state: Mapping[str, torch.Tensor], model: nn.Module, *, path: str | os.PathLike | None = None,
                what: str | None = None) -> dict[str, torch.Tensor]:
    """Map a SpeakerNet state dict onto ``model`` strictly; returns ``{"__S__.<key>": tensor}``.

    Raises DataError naming the first mismatching key (in the file's order, then missing keys in
    the model's order) with both shapes, how many more mismatch, and what the file looks like.
    """
    expected = expected_state(model)
    matched: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    problems: list[str] = []
    for key, value in state.items():
        name = key if key in expected else strip_module(key)
        if name.startswith("__L__."):
            continue  # the loss is not part of the embedding network
        seen.add(name)
        if name not in expected:
            problems.append(f"key {key}: shape {_shape(value)} in the checkpoint, not in the model")
        elif tuple(value.shape) != tuple(expected[name]):
            problems.append(f"key {key}: shape {_shape(value)} in the checkpoint, {list(expected[name])} in the model")
        elif not all_finite(value):
            problems.append(f"key {key} holds NaN or inf")
        else:
            matched[name] = value
    for name, shape in expected.items():
        if name not in seen:
            problems.append(f"key {name}: missing from the checkpoint, shape {list(shape)} in the model")
    if problems:
        more = f" (and {len(problems) - 1} more mismatching keys)" if len(problems) > 1 else ""
        guess = guess_settings(state)
        hint = f"; the checkpoint looks like {_describe(guess)}" if guess else ""
        target = f"{what} " if what else ""
        raise DataError(f"checkpoint does not match the model {target}- {problems[0]}{more}{hint}", path=path)
    return matched


def _load_matched(model: nn.Module, matched: Mapping[str, torch.Tensor]) -> None:
    net = model.model if isinstance(model, WaveformModel) else model
    prefix_fb = "__S__.torchfb."
    net.load_state_dict({k[len("__S__."):]: v for k, v in matched.items() if not k.startswith(prefix_fb)}, strict=True)
    if isinstance(model, WaveformModel):
        # as voxceleb_trainer: the file's STFT window and mel filterbank replace the computed ones
        model.torchfb.load_state_dict({k[len(prefix_fb):]: v for k, v in matched.items() if k.startswith(prefix_fb)},
                                      strict=True)


def _net_description(net: nn.Module) -> str:
    """e.g. "ResNetSE34L (encoder SAP, nOut 512, n_mels 40)", for error messages."""
    name = getattr(net, "model_name", type(net).__name__)
    fc = getattr(net, "fc", None)
    n_out = fc.out_features if isinstance(fc, nn.Linear) else "?"
    return f"{name} (encoder {getattr(net, 'encoder_type', '?')}, nOut {n_out}, n_mels {getattr(net, 'n_mels', '?')})"


def init_from(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Copy a voxceleb_trainer checkpoint's weights into ``model`` (strictly) and return ``model``.

    ``model`` is one of this package's networks (as built by ``build_model``), bare or inside a
    :class:`WaveformModel`. For a bare network the file's front-end buffers are checked (their
    shapes give n_mels) but not used: the network then sees whatever features it is given, so
    they should be the ones it was trained on (voxceleb_trainer's log mel energies).
    """
    state, fmt = read_state(path)
    net = model.model if isinstance(model, WaveformModel) else model
    matched = match_state(state, model, path=path, what=_net_description(net))
    _load_matched(model, matched)
    n_loss = sum(1 for k in state if strip_module(k).startswith("__L__."))
    log.info("loaded %d tensors from voxceleb_trainer checkpoint %s (%s; %d loss tensors not used)",
             len(matched), path, fmt, n_loss)
    if not isinstance(model, WaveformModel):
        log.warning("%s was trained on voxceleb_trainer's front-end (torchaudio log mel, %d bins); "
                    "make sure the features it gets here match", path, net_mels(net))
    return model


def check_vt_settings(model: str, encoder_type: str) -> None:
    """ConfigError unless voxceleb_trainer can build ``model`` with ``encoder_type``."""
    if model not in VT_ENCODERS:
        raise ConfigError(f"voxceleb_trainer model {model!r} is not supported; supported: {', '.join(VT_ENCODERS)}")
    if encoder_type not in VT_ENCODERS[model]:
        raise ConfigError(f"voxceleb_trainer's {model} has no encoder_type {encoder_type!r}; "
                          f"valid: {', '.join(VT_ENCODERS[model])}")


def load_model(path: str | os.PathLike, model: str = "ResNetSE34L", encoder_type: str = "SAP", nOut: int = 512,
               n_mels: int = 40, log_input: bool = True, waveform: bool = True) -> nn.Module:
    """Build the network voxceleb_trainer would build from these flags and load ``path`` into it.

    Returns a :class:`WaveformModel` (input: 16 kHz waveform [batch, samples]) in eval mode, or
    the bare network (input: features [batch, time, n_mels]) with ``waveform=False``. VGGVox
    always has 40 mel bins, as in voxceleb_trainer (``n_mels`` is ignored for it).
    """
    from pyspeaker.models import build_model

    check_vt_settings(model, encoder_type)
    if model == "VGGVox":
        n_mels = VGGVOX_MELS
    net = build_model(model, nOut=int(nOut), encoder_type=encoder_type, n_mels=int(n_mels), input_norm="instance")
    full = WaveformModel(net, log_input=log_input) if waveform else net
    init_from(full, path)
    return full.eval()


# ----------------------------------------------------------------------------- export

def export_checkpoint(model: nn.Module, path: str | os.PathLike, *, fmt: str = "bare",
                      loss_state: Mapping[str, torch.Tensor] | None = None, epoch: int = 0) -> dict[str, torch.Tensor]:
    """Write ``model`` as a voxceleb_trainer ``.model`` file; returns the SpeakerNet state dict written.

    ``model``: a ResNetSE34L/ResNetSE34Half/ResNetSE34V2/VGGVox network of this package, bare or in
    a :class:`WaveformModel`, with ``input_norm`` "instance" (voxceleb_trainer always normalises).
    Keys are ``__S__.<key>``, front-end buffers (``__S__.torchfb.*``) included; ``loss_state``
    (e.g. a loss module's state dict) adds ``__L__.<key>`` entries. ``fmt``: "bare" (the bare state
    dict, like the published models; voxceleb_trainer loads it with a "legacy checkpoint" warning)
    or "new" (``model_state_dict`` + ``epoch``, with empty optimizer/scheduler states, which
    voxceleb_trainer skips with a warning). The file is written atomically.
    """
    if fmt not in ("bare", "new"):
        raise ConfigError(f"unknown checkpoint format {fmt!r}; valid: bare, new")
    net = model.model if isinstance(model, WaveformModel) else model
    name = getattr(net, "model_name", type(net).__name__)
    check_vt_settings(name, getattr(net, "encoder_type", "?"))
    if net.input_norm != "instance":
        raise ConfigError(f"voxceleb_trainer always instance-normalises its input; this {name} uses "
                          f"input_norm {net.input_norm!r}")
    if name == "VGGVox" and net_mels(net) != VGGVOX_MELS:
        raise ConfigError(f"voxceleb_trainer's VGGVox has {VGGVOX_MELS} mel bins; this one has {net_mels(net)}")
    fb = model.torchfb if isinstance(model, WaveformModel) else make_torchfb(net_mels(net), net.frontend_spec)
    if not isinstance(model, WaveformModel):
        log.warning("exporting a %s trained on features: voxceleb_trainer will feed it its own front-end "
                    "(torchaudio log mel, %d bins), which must match the training features", name, net_mels(net))
    state: dict[str, torch.Tensor] = {}
    for key, value in net.state_dict().items():
        state[f"__S__.{key}"] = value.detach().cpu().clone()
    for key, value in fb.state_dict().items():
        state[f"__S__.torchfb.{key}"] = value.detach().cpu().clone()
    for key, value in (loss_state or {}).items():
        state[key if key.startswith("__L__.") else f"__L__.{key}"] = value.detach().cpu().clone()
    payload: dict = state
    if fmt == "new":
        payload = {"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []},
                   "scheduler_state_dict": {}, "epoch": int(epoch)}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return state


# ----------------------------------------------------------------------------- import-model

def import_voxceleb_trainer(path: str | os.PathLike, model: str = "ResNetSE34L", encoder_type: str = "SAP",
                            nOut: int = 512, n_mels: int = 40, log_input: bool = False,
                            trainfunc: str | None = None):
    """A voxceleb_trainer ``.model`` as an :class:`~pyspeaker.compat.importing.Imported` pyspeaker model
    (the strict loader above; waveform front-end included). ``trainfunc`` is recorded: it decides
    whether crop embeddings are L2-normalised in voxceleb_trainer's crop scoring."""
    from pyspeaker.compat.importing import Imported

    if trainfunc is not None and trainfunc not in TEST_NORMALIZE:
        raise ConfigError(f"unknown voxceleb_trainer trainfunc {trainfunc!r}; valid: {', '.join(TEST_NORMALIZE)}")
    if model == "VGGVox":
        n_mels = VGGVOX_MELS
    net = load_model(path, model=model, encoder_type=encoder_type, nOut=nOut, n_mels=n_mels, log_input=log_input)
    options = {"name": model, "waveform": True, "log_input": bool(log_input), "nOut": int(nOut),
               "encoder_type": encoder_type, "n_mels": int(n_mels), "input_norm": "instance"}
    settings = {"model": model, "encoder_type": encoder_type, "nOut": int(nOut), "n_mels": int(n_mels),
                "log_input": bool(log_input), "trainfunc": trainfunc}
    notes = {"inference": {"normalize_crops": TEST_NORMALIZE.get(trainfunc, True)}}
    return Imported("voxceleb_trainer", options, {"waveform": True}, net.state_dict(), Path(path),
                    source_config=settings, notes=notes)
