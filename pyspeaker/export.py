"""Export a trained network to TorchScript or ONNX, for use outside pyspeaker.

The exported model takes features ``[batch, time, n_mels]`` (float32, what ``pyspeaker
make-features`` writes) and returns embeddings ``[batch, nOut]``; batch and time are dynamic.
With ``with_frontend=True`` a waveform model (``waveform: true``) is exported whole: input
``[batch, samples]`` of 16 kHz audio (float32, -1..1). TorchScript traces the front-end as it is;
for ONNX, whose exporter has no complex-valued ``torch.stft``, the power spectrum is computed as a
strided convolution with the windowed DFT basis (same window, centre reflect padding, mel
filterbank and pre-emphasis): log-mel features within about 1e-5 of torchaudio's FFT.

Both formats are made by tracing (every family's forward is traceable; none is scriptable as
written). Tracing records shape arithmetic, not Python branches, so two input checks are not in the
exported graph: TDNN's replicate padding of crops shorter than its 15-frame context, and VGGVox's
refusal of crops under 64 frames. Give the exported models at least that many frames.

ONNX export uses torch's TorchScript-based exporter (``dynamo=False``), which needs the ``onnx``
package (not a pyspeaker dependency: ``pip install -r requirements-test.txt``).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyspeaker.errors import ConfigError
from pyspeaker.fileio import atomic_file

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17


class _DFTMelSpectrogram(nn.Module):
    """torchaudio's MelSpectrogram (power 2, centre reflect padding, onesided) of a ``torchfb``
    without ``torch.stft``: one conv1d with the windowed cos/sin DFT basis, exportable to ONNX."""

    def __init__(self, mel: nn.Module):
        super().__init__()
        spec = mel.spectrogram
        if not (spec.center and spec.pad_mode == "reflect" and spec.power == 2.0 and spec.onesided
                and not spec.normalized and spec.pad == 0):
            raise ConfigError("this waveform front-end's spectrogram settings have no ONNX export; "
                              "export --format torchscript")
        n_fft, window = spec.n_fft, spec.window.detach().double().cpu()
        left = (n_fft - window.numel()) // 2  # torch.stft centres a shorter window in the FFT frame
        full = torch.zeros(n_fft, dtype=torch.float64)
        full[left:left + window.numel()] = window
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
        basis = torch.cat([torch.cos(angle) * full, -torch.sin(angle) * full])[:, None, :]
        self.register_buffer("basis", basis.float())
        self.register_buffer("fb", mel.mel_scale.fb.detach().clone())
        self.n_fft, self.hop, self.bins = n_fft, spec.hop_length, n_fft // 2 + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        y = F.conv1d(x, self.basis, stride=self.hop)                      # [batch, 2 * bins, frames]
        power = y[:, :self.bins] ** 2 + y[:, self.bins:] ** 2
        return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # [batch, n_mels, frames]


class _OnnxWaveformModel(nn.Module):
    """A WaveformModel with its front-end's STFT as a convolution (see _DFTMelSpectrogram)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        fb = model.torchfb
        pre, mel = (fb[0], fb[1]) if isinstance(fb, nn.Sequential) else (None, fb)
        self.pre = pre
        self.mel = _DFTMelSpectrogram(mel)
        self.log_input = model.log_input
        self.model = model.model

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.float()
        if self.pre is not None:
            x = self.pre(x)
        x = self.mel(x) + 1e-6
        if self.log_input:
            x = x.log()
        return self.model(x.transpose(1, 2))


def _features_model(model: nn.Module, with_frontend: bool) -> tuple[nn.Module, bool]:
    """(module to export, takes waveform?)."""
    from pyspeaker.models.frontend import WaveformModel

    if isinstance(model, WaveformModel):
        return (model, True) if with_frontend else (model.model, False)
    if getattr(model, "takes_waveform", False):  # an imported network with its toolkit's own features
        if not with_frontend:
            raise ConfigError(f"{type(model).__name__} computes its features from the samples inside the network: "
                              "export it with --with-frontend (input [batch, samples])")
        return model, True
    if with_frontend:
        raise ConfigError("--with-frontend applies to waveform models only (model option waveform: true); "
                          "this model takes features")
    return model, False


METADATA_KEY = "pyspeaker"  # ONNX metadata_props key / TorchScript extra file "pyspeaker.json"


def export_metadata(checkpoint: dict, waveform_in: bool) -> dict:
    """What ``load_model`` needs to run an exported file as the checkpoint runs: the model options,
    the front-end settings and what the input is."""
    return {"model_options": checkpoint.get("model_options", {}), "feat_config": checkpoint.get("feat_config") or {},
            "speakers": list(checkpoint.get("speakers") or []), "input": "waveform" if waveform_in else "feats"}


def read_metadata(path: str | os.PathLike) -> dict | None:
    """The pyspeaker metadata of an exported ONNX file (None when it has none)."""
    import json

    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def _add_onnx_metadata(path: Path, metadata: dict) -> None:
    import json

    import onnx

    model = onnx.load(os.fspath(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.save(model, os.fspath(path))


def export_model(model: nn.Module, fmt: str, out: str | os.PathLike, example_frames: int = 200,
                 feat_dim: int | None = None, with_frontend: bool = False, checkpoint: dict | None = None) -> Path:
    """Write ``model`` (in eval mode) to ``out`` as ``fmt`` ("torchscript" or "onnx"), atomically.

    ``example_frames``: length of the example input that is traced (any length works afterwards);
    ``feat_dim``: feature dimension (default the model's ``n_mels``). A waveform model is exported
    without its front-end (features in) unless ``with_frontend``. ``checkpoint``: the pyspeaker
    checkpoint the model comes from; its options and front-end settings are stored in the file
    (:func:`export_metadata`), so ``pyspeaker.load_model`` can run it. Returns ``out``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    out = Path(out)
    net, waveform_in = _features_model(model, with_frontend)
    net.eval()
    if waveform_in and fmt == "onnx":
        if getattr(net, "takes_waveform", False):
            raise ConfigError(f"{type(net).__name__}'s front-end uses torch.stft, which the ONNX exporter cannot "
                              "export: use --format torchscript")
        net = _OnnxWaveformModel(net).eval()
    if waveform_in:
        from pyspeaker.models.frontend import crop_samples

        example = torch.zeros(2, crop_samples(example_frames))
        example.normal_(generator=torch.Generator().manual_seed(0)).mul_(0.1)
        names = ("waveform", {0: "batch", 1: "samples"})
    else:
        dim = int(feat_dim if feat_dim is not None else net.n_mels)
        example = torch.randn(2, example_frames, dim, generator=torch.Generator().manual_seed(0))
        names = ("feats", {0: "batch", 1: "time"})
    param = next(net.parameters(), None)
    if param is not None:
        example = example.to(param.device)
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
        except ImportError:
            raise ConfigError("ONNX export needs the 'onnx' package, which pyspeaker does not install: "
                              "pip install onnx (or -r requirements-test.txt)") from None
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer's and exporter's warnings (deprecation, "might not generalize") are about
        # constructs checked above and in the module docstring
        warnings.simplefilter("ignore")
        with atomic_file(out) as tmp:
            meta = None if checkpoint is None else export_metadata(checkpoint, waveform_in)
            if fmt == "torchscript":
                import json

                traced = torch.jit.trace(net, example, check_trace=False)
                extra = {f"{METADATA_KEY}.json": json.dumps(meta)} if meta else {}
                torch.jit.save(traced, str(tmp), _extra_files=extra)
            else:
                torch.onnx.export(net, (example,), str(tmp), input_names=[names[0]], output_names=["embedding"],
                                  dynamic_axes={names[0]: names[1], "embedding": {0: "batch"}},
                                  opset_version=ONNX_OPSET, dynamo=False)
                if meta:
                    _add_onnx_metadata(tmp, meta)
    return out
