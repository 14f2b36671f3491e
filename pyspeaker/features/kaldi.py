"""Kaldi fbank and MFCC (``compute-fbank-feats`` / ``compute-mfcc-feats``) as batched torch code.

Numerically this follows Kaldi's feature-window.cc / mel-computations.cc / feature-{fbank,mfcc}.cc,
i.e. what ``torchaudio.compliance.kaldi.fbank/mfcc`` compute, but arranged for speed:

* the constant pieces (window, mel banks, DCT with the lifter folded in) are built once per
  (options, device) and cached;
* frames are strided views of the waveform; pre-emphasis is done once on the whole (padded)
  waveform instead of on every overlapping frame (pre-emphasis of ``x - mean`` is
  ``g - (1 - coeff) * mean`` with ``g`` the pre-emphasised waveform), so each frame costs a mean,
  one subtraction into the FFT buffer and the window product;
* all frames of all utterances of a batch go through one rfft and one mel product;
* the mel product only multiplies the bins each group of filters can see (the filter matrix is
  banded), and the power spectrum is formed from the real/imaginary parts without ``abs``.

Inputs are [-1, 1] float32 samples (as soundfile gives); Kaldi works on the int16 values, so
they are scaled by 32768 -- folded into the window, which is exact for a power of two.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from pyspeaker.errors import DataError
from pyspeaker.features.config import FeatureConfig

INT16_SCALE = 32768.0
EPS = float(torch.finfo(torch.float32).eps)  # Kaldi floors energies at FLT_EPSILON before log


# ---- constant pieces (numpy, Kaldi's formulas) ------------------------------------------------
def feature_window(window_type: str, size: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi's FeatureWindowFunction (symmetric windows; povey = hann ** 0.85)."""
    i = np.arange(size, dtype=np.float64)
    a = 2.0 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    if window_type == "rectangular":
        return np.ones(size)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * i) + (0.5 - blackman_coeff) * np.cos(2 * a * i)
    raise ValueError(f"invalid window type {window_type}")


def kaldi_mel_banks(num_bins: int, padded_window_size: int, sample_frequency: float,
                    low_freq: float, high_freq: float) -> np.ndarray:
    """Kaldi MelBanks as a [num_bins, padded/2 + 1] matrix (the Nyquist bin gets weight 0).

    Computed in float32 like Kaldi (BaseFloat) and torchaudio.compliance.kaldi: a filter's edge
    weights are differences of nearby mel values, so their float32 rounding is visible
    (~1e-4 in a log-mel bin that a strong tone sits at the edge of); we reproduce it rather
    than compute "more exactly" and differ from both references.
    """
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    num_fft_bins = padded_window_size // 2
    fft_bin_width = sample_frequency / padded_window_size
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
    mel = 1127.0 * (1.0 + fft_bin_width * torch.arange(num_fft_bins, dtype=torch.float32) / 700.0).log()
    up = (mel[None, :] - left) / (center - left)
    down = (right - mel[None, :]) / (right - center)
    banks = torch.clamp_min(torch.minimum(up, down), 0.0).double().numpy()
    return np.concatenate([banks, np.zeros((num_bins, 1))], axis=1)


def kaldi_dct_lifter(num_ceps: int, num_bins: int, cepstral_lifter: float) -> np.ndarray:
    """[num_bins, num_ceps]: Kaldi's orthonormal DCT-II rows, each cepstrum scaled by the lifter."""
    n = np.arange(num_bins, dtype=np.float64)
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    dct = math.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    dct[0, :] = math.sqrt(1.0 / num_bins)
    if cepstral_lifter != 0.0:
        lifter = 1.0 + 0.5 * cepstral_lifter * np.sin(math.pi * k[:, 0] / cepstral_lifter)
        dct *= lifter[:, None]
    return dct.T.copy()


@dataclass(frozen=True)
class MelGroup:
    """Filters [out_lo, out_hi) only see FFT bins [bin_lo, bin_hi): one small matmul each."""

    bin_lo: int
    bin_hi: int
    out_lo: int
    out_hi: int
    weights: Tensor  # [bin_hi - bin_lo, out_hi - out_lo]


def banded_groups(banks: np.ndarray, device: torch.device, filters_per_group: int = 20) -> list[MelGroup]:
    """Split a banded [num_filters, num_bins] matrix into groups of consecutive filters.

    Narrow matmuls are inefficient, so groups keep ~20 filters; that already cuts the multiply
    count ~2-3x for 80 bins (measured fastest among 1-6 groups).
    """
    num = banks.shape[0]
    n_groups = max(1, round(num / filters_per_group))
    bounds = np.linspace(0, num, n_groups + 1).round().astype(int)
    groups = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        cols = np.nonzero(banks[a:b].any(axis=0))[0]
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        w = torch.tensor(banks[a:b, lo:hi].T, dtype=torch.float32, device=device).contiguous()
        groups.append(MelGroup(lo, hi, int(a), int(b), w))
    return groups


def _same_device(have: torch.device, want: torch.device) -> bool:
    """torch.device("cuda") means the current GPU; tensors report "cuda:0"."""
    return have.type == want.type and (want.index is None or have.index == want.index)


class Workspace:
    """Scratch buffers reused between calls.

    A fresh multi-megabyte tensor costs a page fault per 4 KiB page on first touch (glibc hands
    big blocks straight from mmap), which measured at ~40% of the fbank time; reusing buffers
    avoids that.  Not thread-safe: one per extractor/thread.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        numel = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or not _same_device(buf.device, device):
            buf = torch.empty(numel + numel // 4, dtype=dtype, device=device)  # some room to grow
            self._bufs[name] = buf
        return buf[:numel].view(shape)


# FFT / mel are done in blocks of this many frames: bounds scratch memory for long inputs and
# keeps a block's spectrum in cache.
CHUNK_FRAMES = 4096


def frames_to_mel(frames: Tensor, groups: list[MelGroup], use_power: bool, out: Tensor,
                  ws: Workspace) -> Tensor:
    """|rfft(frames)|^2 (or |.|) through the mel filters, written into ``out`` [n, num_filters]."""
    n_bins = frames.shape[1] // 2 + 1
    for r0 in range(0, frames.shape[0], CHUNK_FRAMES):
        block = frames[r0:r0 + CHUNK_FRAMES]
        n = block.shape[0]
        ri = torch.view_as_real(torch.fft.rfft(block, dim=1))  # (rfft's out= measured slower)
        power = ws.get("power", (n, n_bins), torch.float32, frames.device)
        # squaring the contiguous (re, im) pairs, then one strided add, is ~3x faster than
        # re*re + im*im on the strided halves
        sq = torch.square(ri, out=ws.get("square", (n, n_bins, 2), torch.float32, frames.device))
        torch.add(sq[..., 0], sq[..., 1], out=power)
        if not use_power:
            power.sqrt_()
        for g in groups:
            torch.mm(power[:, g.bin_lo:g.bin_hi], g.weights, out=out[r0:r0 + n, g.out_lo:g.out_hi])
    return out


@dataclass(frozen=True)
class KaldiPlan:
    """Everything about a config that does not depend on the audio, on one device."""

    window_size: int
    window_shift: int
    padded_size: int
    window: Tensor  # [window_size], times the input scale (2^15: exact)
    scale: float
    mel_groups: list[MelGroup]
    dct: Tensor | None  # [num_mel_bins, num_ceps], lifter folded in (mfcc only)


@functools.lru_cache(maxsize=64)
def get_plan(cfg: FeatureConfig, device: str, scale: float = INT16_SCALE) -> KaldiPlan:
    dev = torch.device(device)
    window = feature_window(cfg.window_type, cfg.window_size, cfg.blackman_coeff)
    window = torch.tensor(window, dtype=torch.float32, device=dev) * scale
    banks = kaldi_mel_banks(cfg.num_mel_bins, cfg.padded_window_size, cfg.sample_frequency,
                            cfg.low_freq, cfg.high_freq)
    dct = None
    if cfg.kind == "mfcc":
        dct = torch.tensor(kaldi_dct_lifter(cfg.num_ceps, cfg.num_mel_bins, cfg.cepstral_lifter),
                           dtype=torch.float32, device=dev)
    return KaldiPlan(cfg.window_size, cfg.window_shift, cfg.padded_window_size, window, scale,
                     banded_groups(banks, dev), dct)


# ---- framing ---------------------------------------------------------------------------------
def reflect_index(idx: Tensor, n: int) -> Tensor:
    """Kaldi's repeated reflection for out-of-range sample indices: -1 -> 0, n -> n-1."""
    r = torch.remainder(idx, 2 * n)
    return torch.where(r >= n, 2 * n - 1 - r, r)


def num_frames(num_samples: int, cfg: FeatureConfig) -> int:
    """Kaldi's NumFrames()."""
    shift, size = cfg.window_shift, cfg.window_size
    if cfg.snip_edges:
        return 0 if num_samples < size else 1 + (num_samples - size) // shift
    return (num_samples + shift // 2) // shift


def padded_signal(x: Tensor, start: int, stop: int, ws: Workspace) -> Tensor:
    """Samples [start, stop) of ``x`` with Kaldi's reflection outside [0, len(x))."""
    n = x.shape[0]
    if start >= 0 and stop <= n:
        return x[start:stop]
    out = ws.get("signal", (stop - start,), x.dtype, x.device)
    lo, hi = max(start, 0), max(min(stop, n), 0)
    if start < lo:
        out[:lo - start] = x[reflect_index(torch.arange(start, lo, device=x.device), n)]
    out[lo - start:hi - start] = x[lo:hi]
    if stop > max(hi, start):
        first = max(hi, start)
        out[first - start:] = x[reflect_index(torch.arange(first, stop, device=x.device), n)]
    return out


def check_length(num_samples: int, cfg: FeatureConfig) -> int:
    m = num_frames(num_samples, cfg)
    if m < 1:
        need = cfg.window_size if cfg.snip_edges else (cfg.window_shift + 1) // 2
        size = cfg.describe("frame_length" if cfg.snip_edges else "frame_shift", False)
        raise DataError(f"too short: {num_samples} samples (one frame needs {need} with "
                        f"{cfg.describe('snip_edges', False)}, {size})")
    return m


def fill_frames(x: Tensor, cfg: FeatureConfig, plan: KaldiPlan, out: Tensor, ws: Workspace,
                generator: torch.Generator | None = None, need_energy: bool = True) -> Tensor | None:
    """Write the windowed, zero-padded frames of one utterance into ``out`` [m, padded_size].

    ``x``: float32 samples, to be multiplied by ``plan.scale`` (folded into the window; a power
    of two, so bit-for-bit the same as scaling first).  Returns the per-frame log energy [m]
    (Kaldi's, with raw_energy / energy_floor applied; used by --use-energy and VAD), or None.
    """
    size, shift, m = plan.window_size, plan.window_shift, out.shape[0]
    start = 0 if cfg.snip_edges else shift // 2 - size // 2
    p = padded_signal(x, start, start + (m - 1) * shift + size, ws)
    frames = p.as_strided((m, size), (shift, 1))
    if cfg.dither != 0.0:  # Kaldi dithers every frame independently, in int16 units
        noise = torch.randn((m, size), generator=generator, device=x.device, dtype=x.dtype)
        frames = frames + noise * (cfg.dither / plan.scale)
    a = cfg.preemphasis_coefficient
    c = 1.0 - a
    mean = frames.mean(dim=1) if cfg.remove_dc_offset else None
    body = out[:, :size]
    raw_energy = None
    if need_energy and cfg.raw_energy:  # energy before pre-emphasis and window
        if mean is None:
            body.copy_(frames)
        else:
            torch.sub(frames, mean[:, None], out=body)
        raw_energy = torch.linalg.vector_norm(body, dim=1).square_()
    if a == 0.0:
        if raw_energy is not None:
            pass  # body already holds the (centred) frame
        elif mean is None:
            body.copy_(frames)
        else:
            torch.sub(frames, mean[:, None], out=body)
    else:
        # Pre-emphasis of (x - mean) is g - c*mean with g[j] = x[j] - a*x[j-1], except at
        # sample 0 where Kaldi uses x[0] - a*x[0]; g is computed once for the whole signal.
        if cfg.dither != 0.0:
            g = torch.sub(frames[:, 1:], frames[:, :-1], alpha=a)
        else:
            pre = ws.get("preemph", (p.shape[0] - 1,), x.dtype, x.device)
            g = torch.sub(p[1:], p[:-1], alpha=a, out=pre).as_strided((m, size - 1), (shift, 1))
        first = frames[:, 0]
        if mean is None:
            out[:, 1:size].copy_(g)
        else:
            # DC is removed before windowing: after it, low bins would lose digits to cancellation.
            torch.sub(g, (c * mean)[:, None], out=out[:, 1:size])
            first = first - mean
        torch.mul(first, c, out=out[:, 0])
    body.mul_(plan.window)
    out[:, size:].zero_()
    if not need_energy:
        return None
    if raw_energy is None:  # energy of the windowed frame (already scaled)
        log_energy = torch.linalg.vector_norm(body, dim=1).square_()
    else:
        log_energy = raw_energy.mul_(plan.scale * plan.scale)
    log_energy.clamp_min_(EPS).log_()
    if cfg.energy_floor > 0.0:
        log_energy.clamp_min_(math.log(cfg.energy_floor))
    return log_energy


# ---- the features ----------------------------------------------------------------------------
def needs_energy(cfg: FeatureConfig) -> bool:
    """The frame log energy is used by --use-energy, and by VAD on fbank (MFCC VAD reads C0)."""
    return cfg.use_energy or (cfg.vad and cfg.kind == "fbank")


def compute(waveforms: Sequence[Tensor], cfg: FeatureConfig, device: str | torch.device = "cpu",
            generator: torch.Generator | None = None, workspace: Workspace | None = None,
            scale: float = INT16_SCALE) -> tuple[list[Tensor], list[Tensor] | None]:
    """Kaldi fbank/MFCC of each float32 waveform, all frames of all waveforms in one batch.

    Waveforms are in [-1, 1] and are multiplied by ``scale`` (default 32768: the int16 values
    Kaldi works on).  Returns (features [m_i, dim] per utterance, log energy [m_i] per utterance
    or None when the config does not need it), on ``device``.
    """
    if cfg.kind not in ("fbank", "mfcc"):
        raise ValueError(f"kaldi.compute computes fbank or mfcc, not {cfg.kind!r}")
    device = torch.device(device)
    ws = workspace if workspace is not None else Workspace()
    plan = get_plan(cfg, str(device), float(scale))
    counts = [check_length(int(x.shape[0]), cfg) for x in waveforms]
    need_energy = needs_energy(cfg)
    total = sum(counts)
    buf = ws.get("frames", (total, plan.padded_size), torch.float32, device)
    energies, row = [], 0
    for x, m in zip(waveforms, counts):
        x = x.to(device=device, dtype=torch.float32)
        energies.append(fill_frames(x, cfg, plan, buf[row:row + m], ws, generator, need_energy))
        row += m
    log_energy = torch.cat(energies) if need_energy else None
    use_power = cfg.kind == "mfcc" or cfg.use_power
    feats = frames_to_mel(buf, plan.mel_groups, use_power, torch.empty((total, cfg.num_mel_bins), device=device), ws)
    if cfg.kind == "mfcc" or cfg.use_log_fbank:
        feats.clamp_min_(EPS).log_()
    feats = finish(feats, log_energy, cfg, plan)
    return (list(torch.split(feats, counts)),
            list(torch.split(log_energy, counts)) if log_energy is not None else None)


def finish(mel: Tensor, log_energy: Tensor | None, cfg: FeatureConfig, plan: KaldiPlan) -> Tensor:
    """Energy column / DCT / htk ordering, as compute-fbank-feats / compute-mfcc-feats."""
    if cfg.kind == "fbank":
        if not cfg.use_energy:
            return mel
        e = log_energy[:, None]
        return torch.cat([mel, e] if cfg.htk_compat else [e, mel], dim=1)
    ceps = mel @ plan.dct
    if cfg.use_energy:
        ceps[:, 0] = log_energy
    if cfg.htk_compat:
        c0 = ceps[:, :1] if cfg.use_energy else ceps[:, :1] * math.sqrt(2.0)
        ceps = torch.cat([ceps[:, 1:], c0], dim=1)
    return ceps


def fbank(waveform: Tensor, cfg: FeatureConfig | None = None, **options) -> Tensor:
    """One [-1, 1] waveform -> Kaldi fbank [m, dim] (of the int16-scaled samples)."""
    cfg = cfg or FeatureConfig(kind="fbank", **options)
    return compute([waveform], cfg, waveform.device)[0][0]


def mfcc(waveform: Tensor, cfg: FeatureConfig | None = None, **options) -> Tensor:
    """One [-1, 1] waveform -> Kaldi MFCC [m, num_ceps] (of the int16-scaled samples)."""
    cfg = cfg or FeatureConfig(kind="mfcc", **options)
    return compute([waveform], cfg, waveform.device)[0][0]
