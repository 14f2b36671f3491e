"""A trained model you can call: audio in, embeddings, scores and decisions out.

    import pyspeaker
    model = pyspeaker.load_model("exp/<name>/checkpoints/final.pt")
    e = model.embed("a.wav")                  # 1-D float32 numpy array
    s = model.score("a.wav", "b.wav")         # cosine of the two embeddings
    v = model.verify("a.wav", "b.wav", threshold_from="exp/<name>/results/<trials>/cosine_none/metrics.json")
    print(v.score, v.decision)                # 0.73 target

The model carries its own front-end: a model trained from a feature store computes the features
that ``make-features`` computed for it (Kaldi fbank / MFCC or log-mel, VAD, CMN; the settings are
saved in the checkpoint as ``feat_config``), a model trained from audio with ``data.feat_conf``
computes those features, and a waveform model (``model.waveform: true``) takes the samples as they
are. The network then runs as ``pyspeaker extract`` runs it: whole utterance, no crop, no dither,
eval mode, so ``embed`` gives the embedding ``extract`` stores for the same utterance.

Audio at another sample rate than the model's is resampled (torchaudio's sinc resampler), with a
log line. A model trained from a Kaldi ``feats.scp`` knows no feature settings: give them once as
``feature_config=`` (a :class:`~pyspeaker.features.FeatureConfig` or a Kaldi conf file).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)

Audio = str | os.PathLike | np.ndarray


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`SpeakerModel.verify`: the score, the threshold it was compared with
    and the decision (``target``: score >= threshold). True in a boolean context when a target."""

    score: float
    threshold: float
    target: bool

    @property
    def decision(self) -> str:
        """``"target"`` or ``"nontarget"``, as in a Kaldi trial list."""
        return "target" if self.target else "nontarget"

    def __bool__(self) -> bool:
        return self.target


def crop_mean(crops: np.ndarray) -> np.ndarray:
    """An utterance's vector from its crop embeddings [K, D]: the mean of the L2-normalised crops
    (as ``extract --eval-frames`` stores it)."""
    normed = crops / np.maximum(np.linalg.norm(crops, axis=-1, keepdims=True), 1e-12)
    return normed.mean(axis=-2).astype(np.float32)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file a model path names: the file itself, or for a directory (an experiment
    dir or its ``checkpoints/``) its ``final.pt``. DataError when there is none."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoints" / "final.pt", p / "final.pt"):
            if candidate.is_file():
                return candidate
        raise DataError("not a model directory: no checkpoints/final.pt (give a checkpoint file or the "
                        "experiment directory of a finished training)", path=p)
    if not p.exists():
        raise DataError("model not found", path=p)
    return p


def read_threshold(metrics_json: str | os.PathLike) -> float:
    """The ``eer_threshold`` of a ``compute-metrics`` metrics.json."""
    path = Path(metrics_json)
    if not path.is_file():
        raise DataError("metrics file not found", path=path)
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not a metrics.json ({e})", path=path) from None
    value = meta.get("eer_threshold") if isinstance(meta, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        raise DataError("no finite 'eer_threshold' in this file (write it with 'pyspeaker compute-metrics')",
                        path=path)
    return float(value)


def _feature_config(ckpt: dict, given, ckpt_path: Path):
    """The FeatureConfig the model's input is computed with; None for a waveform model."""
    from pyspeaker.features import FeatureConfig, load_feature_config

    opts = ckpt.get("model_options", {})
    stored = ckpt.get("feat_config") or {}
    if opts.get("waveform") or stored.get("waveform"):
        if given is not None:
            raise ConfigError(f"{ckpt_path} is a waveform model (its features are computed in the network): "
                              "it takes no feature config")
        return None
    if isinstance(given, (str, os.PathLike)):
        given = load_feature_config(given)
    elif isinstance(given, dict):
        given = FeatureConfig.from_dict(given)
    if stored.get("kind"):
        cfg = FeatureConfig.from_dict({k: v for k, v in stored.items() if k != "waveform"})
        if given is not None and given.feat_id() != cfg.feat_id():
            raise ConfigError(f"the given feature config ({given.feat_id()}) differs from the one the model was "
                              f"trained with ({cfg.feat_id()}); leave it out", path=ckpt_path)
    elif given is not None:
        cfg = given
    else:
        raise ConfigError("this model was trained from features without their settings (a Kaldi feats.scp): give "
                          "the Kaldi feature config they were made with once, as feature_config= (or --feat-conf)",
                          path=ckpt_path)
    want = opts.get("n_mels")
    if want is not None and int(want) != cfg.dim:
        raise ConfigError(f"the feature config gives dimension {cfg.dim}, but the model takes {want}", path=ckpt_path)
    return cfg


class SpeakerModel:
    """A trained speaker-embedding network with its front-end (see the module doc).

    Build one with :func:`load_model`. ``embed`` takes a file path (or a Kaldi ``cmd |`` pipe, or
    an ``ark:offset`` entry) or a 1-D array of samples; ``score`` and ``verify`` also take
    embeddings (1-D arrays of length :attr:`embedding_dim`).

    Constructor (for other loaders): ``network`` (a torch module taking ``[1, frames, dim]``
    features, or ``[1, samples]`` for a waveform model), ``checkpoint`` (a dict with
    ``model_options`` and ``feat_config``), ``path`` (for messages), ``device``, ``feature_config``
    (see :func:`load_model`), ``eval_frames`` / ``num_eval`` (crop mode when eval_frames is not None;
    crops of feature frames, or of ``eval_frames * 160 + 240`` samples for a waveform model) and
    ``normalize_crops`` (L2-normalise crops before their distances, as all voxceleb_trainer losses
    but ``proto`` do).
    """

    def __init__(self, network, checkpoint: dict, path: str | os.PathLike, device=None, feature_config=None,
                 eval_frames: int | None = None, num_eval: int = 10, normalize_crops: bool = True):
        import torch

        from pyspeaker.training.distributed import pick_device

        self.path = Path(path)
        self.checkpoint = checkpoint
        self.device = torch.device(device) if device is not None else pick_device("auto")
        self.network = network.to(self.device).eval()
        self.feature_config = _feature_config(checkpoint, feature_config, self.path)
        if self.feature_config is None:
            from pyspeaker.models.frontend import SAMPLE_RATE

            self.sample_rate = int(SAMPLE_RATE)
        else:
            self.sample_rate = int(self.feature_config.sample_frequency)
        self._extractor = None
        self._dim = checkpoint.get("model_options", {}).get("nOut")
        self._resample_logged: set[int] = set()
        if (eval_frames is not None and int(eval_frames) < 0) or int(num_eval) < 1:
            raise ConfigError(f"eval_frames must be >= 0 and num_eval >= 1, got {eval_frames} and {num_eval}")
        self.eval_frames = None if eval_frames is None else int(eval_frames)
        self.num_eval = int(num_eval)
        self.normalize_crops = bool(normalize_crops)

    def __repr__(self) -> str:
        front = "waveform" if self.feature_config is None else self.feature_config.feat_id()
        return (f"SpeakerModel({os.fspath(self.path)!r}, {self.checkpoint['model_options'].get('name')}, "
                f"front-end {front}, {self.sample_rate} Hz, device {self.device})")

    @property
    def crop_mode(self) -> bool:
        """voxceleb_trainer's evaluation: ``num_eval`` crops of ``eval_frames`` frames per utterance,
        scored by the mean distance of their embeddings (as ``extract --eval-frames`` and
        ``score --crop-scoring``, or ``voxceleb-eval``)."""
        return self.eval_frames is not None

    @property
    def embedding_dim(self) -> int | None:
        """Dimension of the embeddings (known from the model options, else after the first embedding)."""
        return None if self._dim is None else int(self._dim)

    @property
    def speakers(self) -> list[str]:
        """The training speakers (the classes of the training loss)."""
        return list(self.checkpoint.get("speakers") or [])

    # ---- input ---------------------------------------------------------------------------
    def load(self, x: Audio, sample_rate: int | None = None) -> np.ndarray:
        """float32 samples of ``x`` at the model's sample rate (a path is read, an array is taken
        at ``sample_rate``, default the model's; another rate is resampled, with a log line)."""
        from pyspeaker.audio import load_audio

        if isinstance(x, (str, os.PathLike)):
            samples, rate = load_audio(os.fspath(x))
            if sample_rate is not None and int(sample_rate) != rate:
                raise DataError(f"the file is at {rate} Hz, not the sample_rate={sample_rate} given", path=x)
            where = os.fspath(x)
        else:
            samples = np.asarray(x)
            if samples.ndim != 1:
                raise DataError(f"expected a file path or a 1-D (mono) array of samples, got shape {samples.shape}")
            if samples.dtype == np.int16:
                samples = samples.astype(np.float32) / 32768.0
            samples = np.ascontiguousarray(samples, dtype=np.float32)
            if samples.size == 0:
                raise DataError("no audio (0 samples)")
            if not np.isfinite(samples).all():
                raise DataError("the samples hold NaN or inf")
            rate = self.sample_rate if sample_rate is None else int(sample_rate)
            where = "array"
        if rate != self.sample_rate:
            from pyspeaker.audio import resample

            if rate not in self._resample_logged:
                log.info("resampling %s from %d Hz to the model's %d Hz", where, rate, self.sample_rate)
                self._resample_logged.add(rate)
            samples = resample(samples, rate, self.sample_rate)
        return samples

    def features(self, samples: np.ndarray) -> np.ndarray:
        """The network's input for ``samples`` at the model's rate: features [frames, dim] after
        CMN and VAD (as ``make-features`` stores them), or the samples for a waveform model."""
        if self.feature_config is None:
            return samples
        if self._extractor is None:
            from pyspeaker.features import FeatureExtractor

            self._extractor = FeatureExtractor(self.feature_config)
        frames = self._extractor.num_frames(len(samples))
        if frames == 0:
            raise DataError(f"audio too short for one frame ({len(samples)} samples)")
        feats = self._extractor(samples, self.sample_rate)
        if len(feats) == 0:
            raise DataError("no voiced frame in the audio (VAD dropped every frame)")
        return feats

    # ---- embeddings ----------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.network(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        emb = out.float().cpu().numpy()
        if not np.isfinite(emb).all():
            raise DataError("the network gave a non-finite embedding", path=self.path)
        self._dim = emb.shape[1]
        return emb

    def embed_crops(self, x: Audio, sample_rate: int | None = None) -> np.ndarray:
        """[num_eval, D] float32: the raw embeddings of the utterance's evaluation crops (crop mode
        only), the crops ``extract --eval-frames`` keeps and ``voxceleb-eval`` scores."""
        if not self.crop_mode:
            raise ConfigError("embed_crops needs crop mode: load the model with eval_frames=F")
        inputs = self.features(self.load(x, sample_rate))
        if self.feature_config is None:
            from pyspeaker.compat.voxceleb_trainer import eval_input

            crops = eval_input(inputs, self.eval_frames, self.num_eval)
        else:
            from pyspeaker.extraction import eval_crops

            crops = eval_crops(inputs, self.eval_frames, self.num_eval)
        # An utterance shorter than a crop is padded, so most of its crops are the same samples:
        # run each distinct crop once (the network is deterministic in eval mode).
        slot: dict[bytes, int] = {}
        which = np.array([slot.setdefault(c.tobytes(), len(slot)) for c in crops])
        if len(slot) == len(crops):
            return self._run(crops)
        first = [int(np.argmax(which == k)) for k in range(len(slot))]
        return self._run(crops[first])[which]

    def embed(self, x: Audio, sample_rate: int | None = None) -> np.ndarray:
        """The embedding (1-D float32) of one utterance: a path or a 1-D array of samples at
        ``sample_rate`` (default: the model's rate). In crop mode: the mean of the L2-normalised
        crop embeddings, as ``extract --eval-frames`` stores it."""
        if self.crop_mode:
            return crop_mean(self.embed_crops(x, sample_rate))
        return self._run(self.features(self.load(x, sample_rate))[None])[0]

    def embed_batch(self, items: Sequence[Audio], sample_rate: int | None = None) -> np.ndarray:
        """Embeddings [N, D] (float32) of ``items`` (paths or arrays), each as :meth:`embed` gives it."""
        rows = [self.embed(x, sample_rate) for x in items]
        if not rows:
            return np.zeros((0, self.embedding_dim or 0), dtype=np.float32)
        return np.stack(rows)

    def _vector(self, x: Audio | np.ndarray) -> np.ndarray:
        """An embedding as it is (a 1-D array of length embedding_dim), else the embedding of x."""
        if not isinstance(x, (str, os.PathLike)):
            arr = np.asarray(x)
            if arr.ndim == 1 and self._dim is not None and arr.shape[0] == int(self._dim):
                return arr.astype(np.float32)
        return self.embed(x)

    def _crops(self, x) -> np.ndarray:
        """Crops [K, D] as they are (a 2-D array from embed_crops), else the crops of audio x."""
        if not isinstance(x, (str, os.PathLike)):
            arr = np.asarray(x)
            if arr.ndim == 2:
                return arr.astype(np.float32)
        return self.embed_crops(x)

    # ---- scoring -------------------------------------------------------------------------
    def score(self, a: Audio, b: Audio, backend=None) -> float:
        """Score of ``a`` against ``b`` (paths, sample arrays or embeddings): cosine of the
        embeddings, or with ``backend`` (a back-end dir from ``train-backend``, or a loaded
        back-end) that back-end's score (cosine after its mean, or the PLDA log-likelihood ratio).
        In crop mode without a back-end: voxceleb_trainer's score, minus the mean Euclidean distance
        between the two utterances' (L2-normalised) crop embeddings (a, b: audio or embed_crops output)."""
        if self.crop_mode and backend is None:
            from pyspeaker.scoring.crops import crop_scores

            ca, cb = self._crops(a), self._crops(b)
            if ca.shape[1:] != cb.shape[1:]:
                raise DataError(f"crops of different dimensions: {ca.shape[1]} and {cb.shape[1]}")
            rows = np.zeros(1, dtype=np.int64)
            return float(crop_scores(ca[None], rows, cb[None], rows, self.normalize_crops)[0])
        ea, eb = self._vector(a), self._vector(b)
        if ea.shape != eb.shape:
            raise DataError(f"embeddings of different dimensions: {ea.shape[0]} and {eb.shape[0]}")
        if backend is None:
            na, nb = np.linalg.norm(ea), np.linalg.norm(eb)
            return float(np.dot(ea, eb) / max(na * nb, np.finfo(np.float32).tiny))
        from pyspeaker.scoring.backend import load_backend, score_rows

        if isinstance(backend, (str, os.PathLike)):
            backend = load_backend(backend)[0]
        rows = np.zeros(1, dtype=np.int64)
        return float(score_rows(backend, ea[None].copy(), rows, eb[None].copy(), rows)[0])

    def verify(self, a: Audio, b: Audio, threshold: float | None = None, backend=None,
               threshold_from: str | os.PathLike | None = None) -> Verification:
        """Same speaker? :meth:`score` (with ``backend`` if given) compared with ``threshold``, or
        else with the ``eer_threshold`` of the metrics.json ``threshold_from`` (use one made with the
        same back-end and model). With neither, the threshold is 0, the decision point of calibrated
        log-likelihood ratios (PLDA, or ``calibrate``d scores); for cosine scores it is only a rough
        cut, so a warning says to give one."""
        if threshold is not None and threshold_from is not None:
            raise ConfigError("give a threshold or a metrics.json to read it from, not both")
        if threshold_from is not None:
            threshold = read_threshold(threshold_from)
        elif threshold is None:
            threshold = 0.0
            log.warning("no threshold given: deciding at score 0 (right for calibrated log-likelihood ratios); "
                        "give a threshold or a metrics.json (its eer_threshold) for this model and back-end")
        s = self.score(a, b, backend=backend)
        return Verification(s, float(threshold), bool(s >= threshold))


# load_model keywords for a voxceleb_trainer .model: its trainSpeakerNet.py flags
VT_OPTIONS = ("model", "encoder_type", "nOut", "n_mels", "log_input", "trainfunc")


def _is_voxceleb_trainer(ckpt) -> bool:
    from pyspeaker.compat.voxceleb_trainer import strip_module

    if not isinstance(ckpt, dict) or "model_options" in ckpt:
        return False
    state = ckpt.get("model_state_dict", ckpt)
    return isinstance(state, dict) and any(strip_module(str(k)).startswith("__S__.") for k in state)


def _load_voxceleb_trainer(ckpt_path: Path, ckpt, device, feature_config, eval_frames, num_eval,
                           options: dict) -> SpeakerModel:
    from pyspeaker.compat import voxceleb_trainer as vt

    if feature_config is not None:
        raise ConfigError("a voxceleb_trainer model computes its features in the network: it takes no "
                          "feature config", path=ckpt_path)
    if "model" not in options or "trainfunc" not in options:
        guess = vt.guess_settings(ckpt.get("model_state_dict", ckpt)) if isinstance(ckpt, dict) else None
        hint = ", ".join(f"{k}={v!r}" for k, v in (guess or {}).items() if v is not None and "/" not in str(v))
        raise ConfigError("a voxceleb_trainer model: give the options it was trained with, as "
                          "load_model(path, model=..., trainfunc=..., encoder_type=..., nOut=..., n_mels=..., "
                          "log_input=...), on the command line as --vt-model, --trainfunc, --encoder-type, ..."
                          + (f" (it looks like {hint})" if hint else ""), path=ckpt_path)
    trainfunc = options["trainfunc"]
    if trainfunc not in vt.TEST_NORMALIZE:
        raise ConfigError(f"unknown voxceleb_trainer trainfunc {trainfunc!r}; "
                          f"valid: {', '.join(vt.TEST_NORMALIZE)}")
    settings = {"model": options["model"], "encoder_type": options.get("encoder_type", "SAP"),
                "nOut": int(options.get("nOut", 512)), "n_mels": int(options.get("n_mels", 40)),
                "log_input": bool(options.get("log_input", False))}
    network = vt.load_model(ckpt_path, **settings)
    meta = {"model_options": {"name": settings["model"], "waveform": True, "nOut": settings["nOut"],
                              "encoder_type": settings["encoder_type"], "n_mels": settings["n_mels"]},
            "feat_config": {"waveform": True}, "voxceleb_trainer": dict(settings, trainfunc=trainfunc)}
    return SpeakerModel(network, meta, ckpt_path, device=device,
                        eval_frames=300 if eval_frames is None else eval_frames, num_eval=num_eval,
                        normalize_crops=vt.TEST_NORMALIZE[trainfunc])


class ExportedNetwork:
    """An exported model (ONNX through onnxruntime, or TorchScript) behind the network interface
    :class:`SpeakerModel` uses: called with a torch tensor, returns a torch tensor."""

    def __init__(self, path: Path, fmt: str, device=None):

        self.fmt = fmt
        if fmt == "onnx":
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError("running an ONNX model needs onnxruntime, which pyspeaker does not install: "
                                  "pip install onnxruntime", path=path) from None
            options = ort.SessionOptions()
            options.log_severity_level = 3  # its graph-optimiser notes are not the user's business
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
        else:
            self.module = _jit_load(path).eval()

    def to(self, device):
        if self.fmt != "onnx":
            self.module = self.module.to(device)
        return self

    def eval(self):
        return self

    def __call__(self, x):
        import torch

        if self.fmt != "onnx":
            return self.module(x)
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out)


def _jit_load(path: Path, extra: dict | None = None):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation note: TorchScript files still load
        return torch.jit.load(os.fspath(path), map_location="cpu", _extra_files=extra)


def _exported_format(path: Path) -> str | None:
    """"onnx" or "torchscript" for a file ``pyspeaker export`` wrote, else None."""
    import zipfile

    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/extra/pyspeaker.json") or n.endswith("/constants.pkl") for n in z.namelist()):
                return "torchscript"
    return None


def _load_exported(path: Path, fmt: str, device, feature_config) -> SpeakerModel:
    import json

    if fmt == "onnx":
        try:
            from pyspeaker.export import read_metadata

            meta = read_metadata(path)
        except ImportError:
            raise ConfigError("reading an ONNX model needs the onnx package: pip install onnx onnxruntime",
                              path=path) from None
        except Exception as e:  # a damaged or foreign file
            raise DataError(f"not an ONNX model ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                            path=path) from None
    else:

        extra = {"pyspeaker.json": ""}
        _jit_load(path, extra)
        meta = json.loads(extra["pyspeaker.json"]) if extra["pyspeaker.json"] else None
    if not meta:
        raise DataError("this exported model carries no pyspeaker metadata (front-end settings): export it again "
                        "with 'pyspeaker export'", path=path)
    opts = dict(meta.get("model_options") or {})
    if opts.get("waveform") and meta.get("input") != "waveform":
        raise ConfigError("this file holds a waveform model without its front-end (features in): export it with "
                          "--with-frontend to run it from audio", path=path)
    network = ExportedNetwork(path, fmt, device)
    checkpoint = {"model_options": opts, "feat_config": meta.get("feat_config") or {},
                  "speakers": meta.get("speakers") or [], "exported": fmt}
    return SpeakerModel(network, checkpoint, path, device="cpu" if fmt == "onnx" else device,
                        feature_config=feature_config)


def load_model(path: str | os.PathLike, device=None, feature_config=None, *, eval_frames: int | None = None,
               num_eval: int = 10, **voxceleb_trainer_options) -> SpeakerModel:
    """Load a trained model for inference (see :class:`SpeakerModel`).

    ``path``: a pyspeaker checkpoint (``exp/<name>/checkpoints/final.pt``, an epoch or averaged
    one), an experiment directory (its ``checkpoints/final.pt``), a model directory written by
    ``import-model`` (its ``final.pt``), a file written by ``pyspeaker export`` (``.onnx``, run
    through onnxruntime when installed, or TorchScript), or a voxceleb_trainer ``.model``
    with the options it was trained with (``model``, ``trainfunc``, and as needed ``encoder_type``,
    ``nOut``, ``n_mels``, ``log_input``; voxceleb_trainer's defaults otherwise, except log_input
    False as in ``voxceleb-eval``). ``device``: "cpu", "cuda", ... (default: a GPU when there is one).
    ``feature_config``: only for a model trained from a Kaldi ``feats.scp`` (a FeatureConfig or a Kaldi
    conf file). ``eval_frames`` / ``num_eval``: crop mode (voxceleb_trainer's evaluation; 0 or None:
    the whole utterance; for a voxceleb_trainer model the default is 300 frames and 0 is the whole
    file as one crop, as in ``voxceleb-eval``). Anything else is one DataError or ConfigError naming
    the file.
    """
    from pyspeaker.models import build_model
    from pyspeaker.training.checkpoint import (
        load_checkpoint,
        require_training_checkpoint,
    )

    unknown = sorted(set(voxceleb_trainer_options) - set(VT_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; voxceleb_trainer models take "
                          f"{', '.join(VT_OPTIONS)}")
    ckpt_path = resolve_checkpoint(path)
    exported = _exported_format(ckpt_path)
    if exported:
        if voxceleb_trainer_options or eval_frames:
            raise ConfigError("an exported model runs on whole utterances with the options it was exported with; "
                              "crop mode and voxceleb_trainer options do not apply", path=ckpt_path)
        return _load_exported(ckpt_path, exported, device, feature_config)
    try:
        ckpt = load_checkpoint(ckpt_path)
    except DataError:
        raise DataError("not a pyspeaker model: cannot read it as a checkpoint", path=ckpt_path) from None
    if _is_voxceleb_trainer(ckpt):
        return _load_voxceleb_trainer(ckpt_path, ckpt, device, feature_config, eval_frames, num_eval,
                                      voxceleb_trainer_options)
    require_training_checkpoint(ckpt, ckpt_path)
    if voxceleb_trainer_options:
        raise ConfigError(f"{', '.join(sorted(voxceleb_trainer_options))}: options of a voxceleb_trainer model; "
                          "a pyspeaker checkpoint knows its options", path=ckpt_path)
    network = build_model(**ckpt["model_options"])
    try:
        network.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise DataError(f"the checkpoint's weights do not fit its model options: {str(e).splitlines()[0]}",
                        path=ckpt_path) from None
    normalize = bool((ckpt.get("inference") or {}).get("normalize_crops", True))
    return SpeakerModel(network, ckpt, ckpt_path, device=device, feature_config=feature_config,
                        eval_frames=eval_frames or None, num_eval=num_eval,  # 0: the whole utterance
                        normalize_crops=normalize)
