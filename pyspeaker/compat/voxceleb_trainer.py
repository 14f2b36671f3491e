"""voxceleb_trainer checkpoints: strict loading, evaluation as its ``--eval`` does, and export.

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

Evaluation follows ``SpeakerNet.evaluateFromList`` and ``tuneThreshold`` (see :func:`evaluate`).
"""
from __future__ import annotations

import os
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

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


# ----------------------------------------------------------------------------- reading checkpoints

def read_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The SpeakerNet state dict stored in a voxceleb_trainer ``.model`` file, and its format's name.

    Accepts every format listed in the module docstring (``module.`` prefixes are resolved later,
    against the model's keys). DataError if the file is missing, unreadable or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # foreign pickles, truncated files, ...: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"cannot read as a voxceleb_trainer checkpoint: {type(e).__name__}: {first}",
                        path=path) from None
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


# ----------------------------------------------------------------------------- evaluation

@dataclass
class EvalCrops:
    crops: np.ndarray      # float32 [num_eval, samples] (one whole-file row for eval_frames 0)
    starts: np.ndarray     # int64 start sample of each crop in the (padded) waveform
    wav_len: int           # samples in the file
    padded_len: int        # samples after voxceleb_trainer's wrap padding


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """float64 samples in [-1, 1) and the sample rate, read as voxceleb_trainer does (soundfile)."""
    import soundfile

    if not os.path.isfile(path):
        raise DataError("audio file not found", path=path)
    try:
        audio, rate = soundfile.read(path)  # float64, no int16 scaling beyond soundfile's own
    except (RuntimeError, ValueError, TypeError, EOFError) as e:
        raise DataError(f"cannot decode audio: {getattr(e, 'error_string', e)}", path=path) from None
    if audio.ndim > 1:
        log.warning("%s has %d channels; using the first one", path, audio.shape[1])
        audio = np.ascontiguousarray(audio[:, 0])
    if audio.size == 0:
        raise DataError("no audio (0 samples)", path=path)
    return audio, int(rate)


def eval_crops(audio: np.ndarray, eval_frames: int, num_eval: int = NUM_EVAL) -> EvalCrops:
    """voxceleb_trainer's evaluation crops (``loadWAV(..., evalmode=True)``).

    A file no longer than one crop (``eval_frames * 160 + 240`` samples) is first extended by
    repeating it from its start to crop + 1 samples; the crops start at
    ``int(linspace(0, len - crop, num_eval))``. ``eval_frames`` 0 keeps the whole (padded) file.
    """
    crop = crop_samples(eval_frames)
    wav_len = len(audio)
    if wav_len <= crop:
        audio = np.pad(audio, (0, crop - wav_len + 1), mode="wrap")
    if eval_frames == 0:
        return EvalCrops(audio[None].astype(np.float32), np.zeros(1, np.int64), wav_len, len(audio))
    starts = np.linspace(0, len(audio) - crop, num=num_eval).astype(np.int64)
    crops = np.stack([audio[s:s + crop] for s in starts]).astype(np.float32)
    return EvalCrops(crops, starts, wav_len, len(audio))


def _prefetch(fn, items: Sequence, depth: int = 4) -> Iterator:
    """``map(fn, items)`` with up to ``depth`` items read ahead in threads (soundfile releases the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        for item in it:
            yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


def embed_files(model: nn.Module, files: Sequence[str], test_path: str | os.PathLike, eval_frames: int,
                num_eval: int = NUM_EVAL, device: torch.device | str = "cpu", progress: bool | None = None,
                crops_out: dict | None = None) -> np.ndarray:
    """Raw embeddings ``[len(files), num_eval, nOut]`` (float32): the crops of each file as one batch.

    ``files`` are paths relative to ``test_path`` (joined as voxceleb_trainer does). With
    ``crops_out`` (a dict), each file's :class:`EvalCrops` minus the samples is stored there.
    """
    from tqdm import tqdm

    rates: set[int] = set()

    def load(name: str) -> EvalCrops:
        audio, rate = read_wav(os.path.join(test_path, name))
        rates.add(rate)
        return eval_crops(audio, eval_frames, num_eval)

    model = model.to(device).eval()
    out: np.ndarray | None = None
    n_rows = 1 if eval_frames == 0 else num_eval
    bar = tqdm(_prefetch(load, files), total=len(files), unit="file", desc="embedding",
               disable=True if progress is False else None, leave=False, dynamic_ncols=True)
    with torch.inference_mode():
        for i, c in enumerate(bar):
            emb = model(torch.from_numpy(c.crops).to(device)).float().cpu().numpy()
            if out is None:
                out = np.empty((len(files), n_rows, emb.shape[1]), dtype=np.float32)
            out[i] = emb
            if crops_out is not None:
                crops_out[files[i]] = EvalCrops(np.empty(0, np.float32), c.starts, c.wav_len, c.padded_len)
    if rates - {16000}:
        log.warning("sample rates %s found; voxceleb_trainer's models expect 16000 Hz audio and do not resample",
                    sorted(rates))
    return out if out is not None else np.empty((0, n_rows, 0), dtype=np.float32)


def score_trials(embeddings: np.ndarray, rows_enroll: np.ndarray, rows_test: np.ndarray, normalize: bool,
                 chunk: int = 4096) -> np.ndarray:
    """voxceleb_trainer's trial scores (float32): minus the mean of the crops' pairwise distances.

    For each trial the rows of both files (L2-normalised first if ``normalize``, i.e. the loss's
    ``test_normalize``) give a num_eval x num_eval matrix of Euclidean distances (``torch.cdist``);
    the score is ``-mean``. Computed in batches of ``chunk`` trials with the same float32
    operations as voxceleb_trainer's per-trial loop, so the values are the same.
    """
    import torch.nn.functional as F

    emb = torch.from_numpy(embeddings)
    if normalize:
        emb = F.normalize(emb, p=2, dim=2)
    scores = np.empty(len(rows_enroll), dtype=np.float32)
    for begin in range(0, len(rows_enroll), chunk):
        e = emb[torch.from_numpy(rows_enroll[begin:begin + chunk])]
        t = emb[torch.from_numpy(rows_test[begin:begin + chunk])]
        dist = torch.cdist(e, t).numpy()
        scores[begin:begin + chunk] = -1 * np.mean(dist.reshape(dist.shape[0], -1), axis=1)
    return scores


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) as ``sklearn.metrics.roc_curve(labels, scores, pos_label=1)``.

    One point per distinct score (descending), minus the points that sklearn's default
    ``drop_intermediate=True`` removes (those in the middle of a straight, evenly stepped run),
    plus the (0, 0) start. Scores keep their dtype (voxceleb_trainer's are float32).
    """
    y_true = np.asarray(labels).reshape(-1) == 1
    y_score = np.asarray(scores).reshape(-1)
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    idx = np.r_[np.flatnonzero(np.diff(y_score)), y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[idx]
    fps = 1 + idx - tps
    thresholds = y_score[idx]
    if len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if not (labels == 1).any() or not (labels == 0).any():
        raise DataError("the trial list needs both target (1) and non-target (0) trials for an EER")
    return labels


def voxceleb_trainer_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER in percent exactly as voxceleb_trainer's ``tuneThresholdfromScore``.

    On sklearn's ROC points (:func:`roc_curve`) it takes the first point minimising |FNR - FPR|
    and reports max(FPR, FNR) * 100: no interpolation, and because of the dropped points it can
    be above the interpolated EER of :func:`pyspeaker.metrics.compute_eer`.
    """
    labels = _check_labels(labels)
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.absolute(fnr - fpr)))
    return float(max(fpr[i], fnr[i]) * 100)


def voxceleb_trainer_min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.05, c_miss: float = 1.0,
                             c_fa: float = 1.0) -> float:
    """Normalised minDCF exactly as voxceleb_trainer's ``ComputeErrorRates`` + ``ComputeMinDcf``.

    It sweeps the trials sorted by score (ascending, ties in list order) one at a time, so with
    tied scores it can differ from the tie-aware :func:`pyspeaker.metrics.compute_min_dcf`.
    """
    labels = _check_labels(labels)
    order = np.argsort(np.asarray(scores).reshape(-1), kind="stable")
    lab = labels[order]
    fnrs = np.cumsum(lab) / lab.sum()
    fprs = 1 - np.cumsum(1 - lab) / (lab.size - lab.sum())
    c_det = c_miss * fnrs * p_target + c_fa * fprs * (1 - p_target)
    return float(c_det.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


@dataclass
class EvalResult:
    files: list[str]            # every file in the list, once, sorted (voxceleb_trainer's order)
    embeddings: np.ndarray      # float32 [len(files), num_eval, nOut], raw model outputs
    scores: np.ndarray          # float32, one per trial, in list order
    labels: np.ndarray | None   # int64 1/0 per trial, None for an unlabeled list
    enroll: list[str]
    test: list[str]
    crops: dict[str, EvalCrops]  # per file: crop starts, lengths (no samples)


def evaluate(model: nn.Module, test_list: str | os.PathLike, test_path: str | os.PathLike, eval_frames: int,
             normalize: bool, num_eval: int = NUM_EVAL, device: torch.device | str = "cpu",
             progress: bool | None = None) -> EvalResult:
    """voxceleb_trainer's ``evaluateFromList``: embed every listed file once, then score every trial.

    ``model`` takes a waveform batch (a :class:`WaveformModel`). The list is ``label enroll test``
    (VoxCeleb) or Kaldi trials; paths are relative to ``test_path``.
    """
    from pyspeaker.data.trials import read_trials

    trials = read_trials(test_list)
    files = sorted(set(trials.enroll) | set(trials.test))
    row = {f: i for i, f in enumerate(files)}
    crops: dict[str, EvalCrops] = {}
    emb = embed_files(model, files, test_path, eval_frames, num_eval, device, progress, crops_out=crops)
    rows_e = np.fromiter((row[f] for f in trials.enroll), np.int64, len(trials.enroll))
    rows_t = np.fromiter((row[f] for f in trials.test), np.int64, len(trials.test))
    scores = score_trials(emb, rows_e, rows_t, normalize)
    labels = None if trials.labels is None else trials.labels.astype(np.int64)
    return EvalResult(files, emb, scores, labels, list(trials.enroll), list(trials.test), crops)


def write_embeddings_npz(path: str | os.PathLike, names: Iterable[str], embeddings: np.ndarray) -> None:
    """An .npz (readable with ``numpy.load``) with one float32 array per name, written atomically.

    Written member by member: the names are file paths (slashes and all), which ``numpy.savez``
    would take as keyword arguments.
    """
    with atomic_file(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in zip(names, embeddings):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value, dtype=np.float32), allow_pickle=False)
