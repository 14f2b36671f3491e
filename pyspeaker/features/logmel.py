"""voxceleb_trainer's log-mel front-end, batched.

Equals ``torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length,
window_fn=torch.hamming_window, n_mels)`` followed by ``log(x + 1e-6)`` on the [-1, 1] waveform
(the models' in-graph front-end, before their InstanceNorm).  Kaldi-style options map as:

  --sample-frequency  sample_rate          --num-mel-bins   n_mels
  --frame-length      win_length (ms)      --frame-shift    hop_length (ms)
  --round-to-power-of-two  n_fft = next power of two of win_length (else n_fft = win_length)
  --low-freq / --high-freq  f_min / f_max (high <= 0: offset from Nyquist)
  --window-type       hamming | hanning | rectangular (torch's periodic windows)
  --snip-edges=false  center=True with reflect padding (true: center=False)
  --use-power         power 2 (false: magnitude)      --use-log-fbank  log(x + 1e-6)
  --preemphasis-coefficient  voxceleb_trainer's PreEmphasis on the waveform (ResNetSE34V2: 0.97)

As in torch.stft, the win_length window sits in the middle of each n_fft frame (elsewhere would
be a circular shift with the same power spectrum but different FFT rounding).  The FFT / mel
part is shared with the Kaldi features (kaldi.frames_to_mel).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from pyspeaker.errors import DataError
from pyspeaker.features.config import FeatureConfig
from pyspeaker.features.kaldi import EPS, INT16_SCALE, MelGroup, Workspace, banded_groups, frames_to_mel

LOG_OFFSET = 1e-6


@dataclass(frozen=True)
class LogmelPlan:
    win_length: int
    hop: int
    n_fft: int
    window: Tensor
    mel_groups: list[MelGroup]


def torch_window(window_type: str, size: int, device: torch.device) -> Tensor:
    if window_type == "hamming":
        return torch.hamming_window(size, device=device)
    if window_type == "hanning":
        return torch.hann_window(size, device=device)
    return torch.ones(size, device=device)


@functools.lru_cache(maxsize=16)
def get_plan(cfg: FeatureConfig, device: str) -> LogmelPlan:
    import torchaudio.functional as AF

    dev = torch.device(device)
    n_fft = cfg.padded_window_size
    fb = AF.melscale_fbanks(n_fft // 2 + 1, f_min=cfg.low_freq, f_max=cfg.effective_high_freq,
                            n_mels=cfg.num_mel_bins, sample_rate=int(cfg.sample_frequency),
                            norm=None, mel_scale="htk")  # [n_freqs, n_mels]
    return LogmelPlan(cfg.window_size, cfg.window_shift, n_fft, torch_window(cfg.window_type, cfg.window_size, dev),
                      banded_groups(fb.T.double().numpy(), dev))


def reflect_index(idx: Tensor, n: int) -> Tensor:
    """torch 'reflect' padding (edge not repeated: -1 -> 1), repeated for very short inputs."""
    if n == 1:
        return torch.zeros_like(idx)
    r = torch.remainder(idx, 2 * n - 2)
    return torch.where(r >= n, 2 * n - 2 - r, r)


def preemphasis(x: Tensor, coef: float) -> Tensor:
    """voxceleb_trainer's PreEmphasis: y[0] = x[0] - coef*x[1], y[t] = x[t] - coef*x[t-1]."""
    # Same arithmetic as voxceleb_trainer (reflect pad + conv1d), so results match bit for bit.
    kernel = torch.tensor([[[-coef, 1.0]]], dtype=x.dtype, device=x.device)
    padded = torch.nn.functional.pad(x[None, None], (1, 0), mode="reflect")
    return torch.nn.functional.conv1d(padded, kernel)[0, 0]


def frame_layout(num_samples: int, cfg: FeatureConfig, plan: LogmelPlan) -> tuple[int, int]:
    """(number of frames, sample index where frame 0's window starts)."""
    offset = (plan.n_fft - plan.win_length) // 2  # window position inside the n_fft frame
    if cfg.snip_edges:
        if num_samples < plan.n_fft:
            raise DataError(f"too short: {num_samples} samples (one frame needs {plan.n_fft} with "
                            f"{cfg.describe('snip_edges', False)})")
        return 1 + (num_samples - plan.n_fft) // plan.hop, offset
    if num_samples <= plan.n_fft // 2:
        raise DataError(f"too short: {num_samples} samples (centred frames need more than {plan.n_fft // 2})")
    return 1 + num_samples // plan.hop, offset - plan.n_fft // 2


def frames_view(x: Tensor, start: int, m: int, size: int, hop: int, ws: Workspace, name: str) -> Tensor:
    """[m, size] frames starting at sample ``start`` (reflect-padded where out of range)."""
    n = x.shape[0]
    stop = start + (m - 1) * hop + size
    if start < 0 or stop > n:
        p = ws.get(name, (stop - start,), x.dtype, x.device)
        torch.index_select(x, 0, reflect_index(torch.arange(start, stop, device=x.device), n), out=p)
    else:
        p = x[start:stop]
    return p.as_strided((m, size), (hop, 1))


def frame_log_energy(frames: Tensor) -> Tensor:
    """Kaldi's raw log energy (DC removed, int16 scale) of [-1, 1] frames, for VAD."""
    centred = frames - frames.mean(dim=1, keepdim=True)
    energy = torch.linalg.vector_norm(centred, dim=1).square_()
    return energy.mul_(INT16_SCALE * INT16_SCALE).clamp_min_(EPS).log_()


def compute(waveforms: Sequence[Tensor], cfg: FeatureConfig, device: str | torch.device = "cpu",
            workspace: Workspace | None = None, need_energy: bool | None = None,
            ) -> tuple[list[Tensor], list[Tensor] | None]:
    """Log-mel [m_i, n_mels] of each [-1, 1] float waveform, plus per-frame log energies (for
    VAD; computed when ``need_energy``, default cfg.vad, else None)."""
    device = torch.device(device)
    ws = workspace if workspace is not None else Workspace()
    need_energy = cfg.vad if need_energy is None else need_energy
    plan = get_plan(cfg, str(device))
    layouts = [frame_layout(int(x.shape[0]), cfg, plan) for x in waveforms]
    counts = [m for m, _ in layouts]
    total = sum(counts)
    buf = ws.get("frames", (total, plan.n_fft), torch.float32, device)
    lo, hi = (plan.n_fft - plan.win_length) // 2, (plan.n_fft + plan.win_length) // 2
    energies, row = [], 0
    for x, (m, start) in zip(waveforms, layouts):
        x = x.to(device=device, dtype=torch.float32)
        frames = frames_view(x, start, m, plan.win_length, plan.hop, ws, "signal")
        if need_energy:  # before pre-emphasis, like Kaldi's raw energy
            energies.append(frame_log_energy(frames))
        if cfg.preemphasis_coefficient != 0.0:
            x = preemphasis(x, cfg.preemphasis_coefficient)
            frames = frames_view(x, start, m, plan.win_length, plan.hop, ws, "signal")
        out = buf[row:row + m]
        # the window sits in the middle of the n_fft frame, as in torch.stft
        torch.mul(frames, plan.window, out=out[:, lo:hi])
        out[:, :lo].zero_()
        out[:, hi:].zero_()
        row += m
    feats = frames_to_mel(buf, plan.mel_groups, cfg.use_power, torch.empty((total, cfg.num_mel_bins), device=device), ws)
    if cfg.use_log_fbank:
        feats.add_(LOG_OFFSET).log_()
    return (list(torch.split(feats, counts)),
            list(torch.split(torch.cat(energies), counts)) if need_energy else None)


def logmel(waveform: Tensor, cfg: FeatureConfig | None = None, **options) -> Tensor:
    """One [-1, 1] waveform -> log-mel [m, n_mels]; options as FeatureConfig(kind='logmel')."""
    cfg = cfg or FeatureConfig(kind="logmel", **options)
    return compute([waveform], cfg, waveform.device)[0][0]
