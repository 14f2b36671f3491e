"""Model inputs: per-crop input normalisation and voxceleb_trainer's raw-waveform front-end.

Every network in the zoo takes features ``[batch, time, n_mels]``. Where training or evaluation
starts from audio (voxceleb_trainer's models compute their features inside the network), a
:class:`WaveformModel` puts :class:`MelFrontend`-style feature computation in front of a network:

    waveform [batch, samples] -> torchaudio MelSpectrogram (+ optional pre-emphasis)
                              -> + 1e-6 -> natural log (``log_input``) -> [batch, frames, n_mels]
                              -> network (which applies its per-crop instance norm first)

This is voxceleb_trainer's front-end step for step (16 kHz, n_fft 512, 25 ms window, 10 ms hop,
centre padding; see ../shared/compat/voxceleb_trainer/README.md). The front-end module is called
``torchfb`` and has voxceleb_trainer's buffer names (``spectrogram.window``, ``mel_scale.fb``,
``0.flipped_filter``), so a checkpoint's window and filterbank can replace the computed ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_NORMS = ("instance", "mean", "none")
SAMPLE_RATE = 16000
HOP = 160
WIN = 400


def normalize_input(feats: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-crop normalisation of ``feats`` [batch, time, dim] over time; returns [batch, dim, time].

    ``instance``: each bin to zero mean and unit (biased) variance, eps 1e-5, exactly
    voxceleb_trainer's ``InstanceNorm1d``; ``mean``: mean subtraction only (Kaldi's CMN over the
    crop); ``none``: unchanged. The result is channel-first because every network wants that.
    """
    x = feats.transpose(1, 2)
    if kind == "instance":
        return F.instance_norm(x, eps=1e-5)
    if kind == "mean":
        return x - x.mean(dim=2, keepdim=True)
    if kind == "none":
        return x
    raise ValueError(f"unknown input_norm {kind!r}; valid: {', '.join(INPUT_NORMS)}")


def check_input_norm(kind: str) -> str:
    if kind not in INPUT_NORMS:
        raise ValueError(f"unknown input_norm {kind!r}; valid: {', '.join(INPUT_NORMS)}")
    return kind


@dataclass(frozen=True)
class MelSpec:
    """How a model family's waveform front-end differs from the ResNetSE34L one."""

    preemphasis: bool = False    # 0.97 pre-emphasis first (ResNetSE34V2, RawNet3)
    window: str = "hamming"      # "hamming" (torch default, periodic) or "hann" (VGGVox)
    f_max: float | None = None   # None = sample_rate / 2; VGGVox passes 8000 explicitly


class PreEmphasis(nn.Module):
    """y[t] = x[t] - coef * x[t-1], with x[-1] := x[1] (one sample of reflect padding on the left)."""

    def __init__(self, coef: float = 0.97):
        super().__init__()
        # kept as a buffer because voxceleb_trainer's checkpoints carry it (``torchfb.0.flipped_filter``)
        self.register_buffer("flipped_filter", torch.tensor([[[-coef, 1.0]]], dtype=torch.float32))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = F.pad(wav.unsqueeze(1), (1, 0), mode="reflect")
        return F.conv1d(x, self.flipped_filter).squeeze(1)


def make_torchfb(n_mels: int, spec: MelSpec) -> nn.Module:
    """voxceleb_trainer's ``torchfb`` module: waveform [batch, samples] -> power mel [batch, n_mels, frames]."""
    import torchaudio

    window_fn = {"hamming": torch.hamming_window, "hann": torch.hann_window}[spec.window]
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=512, win_length=WIN, hop_length=HOP,
                                               f_min=0.0, f_max=spec.f_max, n_mels=n_mels, window_fn=window_fn)
    return nn.Sequential(PreEmphasis(), mel) if spec.preemphasis else mel


def crop_samples(frames: int) -> int:
    """Samples in a crop of ``frames`` frames, as voxceleb_trainer cuts them (frames * 160 + 240)."""
    return frames * HOP + WIN - HOP


class WaveformModel(nn.Module):
    """``torchfb`` front-end + a feature network: waveform [batch, samples] -> embeddings [batch, nOut]."""

    def __init__(self, model: nn.Module, log_input: bool = True, spec: MelSpec | None = None):
        super().__init__()
        self.spec = spec or getattr(model, "frontend_spec", MelSpec())
        self.log_input = bool(log_input)
        self.torchfb = make_torchfb(model.n_mels, self.spec)
        self.model = model

    @property
    def n_mels(self) -> int:
        return self.model.n_mels

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel features [batch, frames, n_mels] (before the network's input normalisation)."""
        # Features are fixed inputs: no gradient and always float32, as in voxceleb_trainer.
        with torch.no_grad(), torch.autocast(device_type=wav.device.type, enabled=False):
            x = self.torchfb(wav.float()) + 1e-6
            if self.log_input:
                x = x.log()
        return x.transpose(1, 2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(self.features(wav))
