"""SpeechBrain's ECAPA-TDNN speaker encoder (the ``spkrec-ecapa-voxceleb`` recipe), samples in.

What ``EncoderClassifier.encode_batch`` computes for utterances of full length, operation for
operation, so an imported ``embedding_model.ckpt`` gives SpeechBrain's embedding:

    fbank     SpeechBrain's ``Fbank``: centred STFT (400-point FFT, 25 ms periodic Hamming window,
              10 ms hop, zero padding), power spectrum, triangular mel filters built as its
              ``Filterbank`` builds them, 10*log10 with a floor of 1e-10 and the top_db (80 dB)
              limit below each utterance's maximum
    mean norm ``InputNormalization(norm_type="sentence", std_norm=False)``: the utterance's mean
              over frames subtracted
    blocks    ``ECAPA_TDNN``: TDNN block (conv -> ReLU -> BN), SE-Res2Net blocks, multi-layer
              feature aggregation, attentive statistics pooling with global context, BN, 1x1 conv
    emb norm  optionally (``embedding_norm``), ``mean_var_norm_emb``: the saved global mean of the
              embeddings subtracted (and their std divided out with ``embedding_std_norm``), as
              ``encode_batch(..., normalize=True)`` does

The module names are SpeechBrain's (``blocks.0.conv.conv.weight``, ``asp_bn.norm.running_mean``,
...), so a SpeechBrain state dict loads as it is. Convolutions pad "same" by reflection, as
SpeechBrain's ``Conv1d`` does. Every batch row is taken as a full-length utterance (relative
length 1), which is what pyspeaker feeds a network. Option ``nOut`` is SpeechBrain's
``lin_neurons`` and ``n_mels`` its ``input_size``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float,
                   filter_shape: str = "triangular") -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels]: SpeechBrain's frozen ``Filterbank`` matrix, built with its float32 ops."""
    mel = torch.linspace(_mel(f_min), _mel(f_max), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = (hz[1:] - hz[:-1])[:-1]
    f_central = hz[1:-1]
    n_stft = n_fft // 2 + 1
    all_freqs = torch.linspace(0, sample_rate // 2, n_stft).repeat(n_mels, 1)
    f_central = f_central.repeat(n_stft, 1).transpose(0, 1)
    band = band.repeat(n_stft, 1).transpose(0, 1)
    if filter_shape == "triangular":
        slope = (all_freqs - f_central) / band
        return torch.max(torch.zeros(1), torch.min(slope + 1.0, -slope + 1.0)).transpose(0, 1)
    if filter_shape == "rectangular":
        return (all_freqs.ge(f_central - band) * all_freqs.le(f_central + band)).float().transpose(0, 1)
    if filter_shape == "gaussian":
        return torch.exp(-0.5 * ((all_freqs - f_central) / (band / torch.tensor(2))) ** 2).transpose(0, 1)
    raise ValueError(f"filter_shape must be triangular, rectangular or gaussian, got {filter_shape!r}")


class Fbank(nn.Module):
    """SpeechBrain's ``Fbank`` (no deltas, no context): samples [B, N] -> log mel energies [B, frames, n_mels]."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, n_mels: int = 80, win_length: float = 25,
                 hop_length: float = 10, f_min: float = 0, f_max: float | None = None,
                 filter_shape: str = "triangular", amin: float = 1e-10, ref_value: float = 1.0,
                 top_db: float = 80.0):
        super().__init__()
        f_max = sample_rate // 2 if f_max is None else f_max
        if f_min >= f_max:
            raise ValueError(f"f_min ({f_min}) must be below f_max ({f_max})")
        self.n_fft = int(n_fft)
        # window and hop are given in ms, rounded to samples as SpeechBrain's STFT does
        self.win_length = round(sample_rate / 1000.0 * win_length)
        self.hop_length = round(sample_rate / 1000.0 * hop_length)
        self.amin, self.top_db = float(amin), float(top_db)
        self.db_offset = 10 * math.log10(max(amin, ref_value))
        # derived, not learned: non-persistent, so the state dict holds SpeechBrain's tensors only
        self.register_buffer("window", torch.hamming_window(self.win_length), persistent=False)
        self.register_buffer("fbank_matrix", mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max, filter_shape),
                             persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):  # SpeechBrain computes its features in float32
            wav = wav.float()
            spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                              pad_mode="constant", normalized=False, onesided=True, return_complex=True)
            power = torch.view_as_real(spec).pow(2).sum(-1).transpose(1, 2)  # [B, frames, bins]
            x_db = 10 * torch.log10(torch.clamp(torch.matmul(power, self.fbank_matrix), min=self.amin))
            x_db = x_db - self.db_offset
            # top_db: nothing more than 80 dB below the utterance's loudest value
            floor = x_db.amax(dim=(-2, -1)) - self.top_db
            return torch.max(x_db, floor.view(x_db.shape[0], 1, 1))


class Conv1d(nn.Module):
    """SpeechBrain's ``Conv1d`` as ECAPA uses it: channels first, "same" length by reflection padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel sizes must be odd, got {kernel_size}")
        self.pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad, self.pad), mode="reflect")
        return self.conv(x)


class BatchNorm1d(nn.Module):
    """SpeechBrain's ``BatchNorm1d`` wrapper (its tensors sit under ``.norm``)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(input_size, eps=1e-5, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TDNNBlock(nn.Module):
    """conv -> ReLU -> BN (SpeechBrain's order; its dropout is 0 in the recipe and left out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, groups: int = 1):
        super().__init__()
        self.conv = Conv1d(in_channels, out_channels, kernel_size, dilation, groups)
        self.norm = BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)))


class Res2NetBlock(nn.Module):
    """Channel groups in a chain: group 0 passes through, group i > 0 is convolved after adding group i-1's output."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by res2net_scale ({scale})")
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = []
        for i, x_i in enumerate(torch.chunk(x, self.scale, dim=1)):
            if i == 0:
                y_i = x_i
            elif i == 1:
                y_i = self.blocks[0](x_i)
            else:
                y_i = self.blocks[i - 1](x_i + y_i)
            y.append(y_i)
        return torch.cat(y, dim=1)


class SEBlock(nn.Module):
    """Squeeze-excitation over the utterance's mean (sum / frames, as SpeechBrain's masked mean computes it)."""

    def __init__(self, in_channels: int, se_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = Conv1d(in_channels, se_channels, 1)
        self.conv2 = Conv1d(se_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.sum(dim=2, keepdim=True) / x.shape[-1]
        return torch.sigmoid(self.conv2(F.relu(self.conv1(s)))) * x


class SERes2NetBlock(nn.Module):
    """TDNN 1x1 -> Res2Net -> TDNN 1x1 -> SE, plus the (projected when the width changes) input."""

    def __init__(self, in_channels: int, out_channels: int, res2net_scale: int, se_channels: int,
                 kernel_size: int, dilation: int, groups: int = 1):
        super().__init__()
        self.tdnn1 = TDNNBlock(in_channels, out_channels, 1, 1, groups)
        self.res2net_block = Res2NetBlock(out_channels, res2net_scale, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(out_channels, out_channels, 1, 1, groups)
        self.se_block = SEBlock(out_channels, se_channels, out_channels)
        self.shortcut = Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + residual


def _weighted_stats(x: torch.Tensor, m: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (m * x).sum(2)
    std = torch.sqrt((m * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(eps))
    return mean, std


class AttentiveStatisticsPooling(nn.Module):
    """Channel- and frame-wise attention (optionally seeing the utterance's mean and std) -> weighted mean and std."""

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True):
        super().__init__()
        self.eps = 1e-12
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * 3 if global_context else channels, attention_channels, 1, 1)
        self.conv = Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> [B, 2C, 1]."""
        L = x.shape[-1]
        if self.global_context:
            # uniform weights 1/L, as SpeechBrain's full-length mask divided by its total
            uniform = torch.ones(x.shape[0], 1, L, device=x.device, dtype=x.dtype) / L
            mean, std = _weighted_stats(x, uniform, self.eps)
            attn = torch.cat([x, mean.unsqueeze(2).repeat(1, 1, L), std.unsqueeze(2).repeat(1, 1, L)], dim=1)
        else:
            attn = x
        attn = F.softmax(self.conv(torch.tanh(self.tdnn(attn))), dim=2)
        mean, std = _weighted_stats(x, attn, self.eps)
        return torch.cat((mean, std), dim=1).unsqueeze(2)


class EmbeddingNorm(nn.Module):
    """``mean_var_norm_emb``: SpeechBrain's global InputNormalization of the embeddings, with its saved statistics."""

    def __init__(self, dim: int, std_norm: bool = False):
        super().__init__()
        self.std_norm = bool(std_norm)
        self.register_buffer("glob_mean", torch.zeros(dim))
        if self.std_norm:
            self.register_buffer("glob_std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fixed statistics: SpeechBrain stops updating them after its first epochs; here they are never updated
        x = x - self.glob_mean
        return x / self.glob_std.clamp(min=1e-10) if self.std_norm else x


class SpeechBrainECAPA(nn.Module):
    """SpeechBrain's spkrec-ecapa-voxceleb encoder: samples [B, N] at 16 kHz -> embeddings [B, nOut].

    Keywords: the ``ECAPA_TDNN`` hyperparameters (``n_mels`` = its input_size, ``nOut`` = its
    lin_neurons, ``channels``, ``kernel_sizes``, ``dilations``, ``attention_channels``,
    ``res2net_scale``, ``se_channels``, ``global_context``, ``groups``), the ``Fbank`` ones
    (``sample_rate``, ``n_fft``, ``win_length`` and ``hop_length`` in ms, ``f_min``, ``f_max``,
    ``filter_shape``, ``top_db``) and ``embedding_norm`` / ``embedding_std_norm`` (apply
    ``mean_var_norm_emb``; its statistics are the buffers ``emb_norm.glob_mean`` / ``glob_std``).
    """

    takes_waveform = True
    model_name = "SpeechBrainECAPA"

    def __init__(self, n_mels: int = 80, nOut: int = 192,
                 channels: Sequence[int] = (1024, 1024, 1024, 1024, 3072),
                 kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1), dilations: Sequence[int] = (1, 2, 3, 4, 1),
                 attention_channels: int = 128, res2net_scale: int = 8, se_channels: int = 128,
                 global_context: bool = True, groups: Sequence[int] = (1, 1, 1, 1, 1),
                 sample_rate: int = 16000, n_fft: int = 400, win_length: float = 25, hop_length: float = 10,
                 f_min: float = 0, f_max: float | None = None, filter_shape: str = "triangular",
                 top_db: float = 80.0, embedding_norm: bool = False, embedding_std_norm: bool = False):
        super().__init__()
        channels, kernel_sizes, dilations, groups = (list(map(int, v)) for v in (channels, kernel_sizes, dilations,
                                                                                  groups))
        if not (len(channels) == len(kernel_sizes) == len(dilations) == len(groups)) or len(channels) < 3:
            raise ValueError("channels, kernel_sizes, dilations and groups need the same length (3 or more), got "
                             f"{len(channels)}, {len(kernel_sizes)}, {len(dilations)}, {len(groups)}")
        if int(sample_rate) != 16000:
            raise ValueError(f"pyspeaker feeds waveform models 16 kHz audio; sample_rate {sample_rate} is not supported")
        if embedding_std_norm and not embedding_norm:
            raise ValueError("embedding_std_norm needs embedding_norm")
        self.n_mels, self.nOut = int(n_mels), int(nOut)
        self.fbank = Fbank(int(sample_rate), int(n_fft), self.n_mels, win_length, hop_length, f_min, f_max,
                           filter_shape, top_db=top_db)
        self.blocks = nn.ModuleList([TDNNBlock(self.n_mels, channels[0], kernel_sizes[0], dilations[0], groups[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(SERes2NetBlock(channels[i - 1], channels[i], int(res2net_scale), int(se_channels),
                                              kernel_sizes[i], dilations[i], groups[i]))
        self.mfa = TDNNBlock(channels[-2] * (len(channels) - 2), channels[-1], kernel_sizes[-1], dilations[-1],
                             groups[-1])
        self.asp = AttentiveStatisticsPooling(channels[-1], int(attention_channels), bool(global_context))
        self.asp_bn = BatchNorm1d(channels[-1] * 2)
        self.fc = Conv1d(channels[-1] * 2, self.nOut, 1)
        self.emb_norm = EmbeddingNorm(self.nOut, embedding_std_norm) if embedding_norm else None

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """SpeechBrain's ECAPA_TDNN on mean-normalised features [B, frames, n_mels] -> [B, nOut] (no emb norm)."""
        x = feats.transpose(1, 2)
        xl = []
        for layer in self.blocks:
            x = layer(x)
            xl.append(x)
        x = self.mfa(torch.cat(xl[1:], dim=1))
        x = self.fc(self.asp_bn(self.asp(x)))
        return x.squeeze(2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, samples] (16 kHz, float in [-1, 1]) -> embeddings [B, nOut]."""
        feats = self.fbank(wav)
        # sentence mean normalisation over all frames (relative length 1)
        feats = feats - feats.sum(dim=1, keepdim=True) / feats.shape[1]
        emb = self.embed_features(feats)
        return emb if self.emb_norm is None else self.emb_norm(emb)
