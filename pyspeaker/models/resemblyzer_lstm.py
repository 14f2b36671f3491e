"""Resemblyzer's voice encoder (GE2E, Wan et al. ICASSP 2018), samples in, as ``VoiceEncoder.embed_utterance``.

    mel       librosa's ``melspectrogram`` of the whole utterance: 25 ms Hann window (periodic),
              10 ms hop, centred frames with zero padding, power 2, 40 Slaney mel bands
              (``norm='slaney'``), not log-compressed
    partials  windows of 160 frames (1.6 s), ``rate`` per second; the utterance is zero-padded at
              the end so that the last window fits, and that window is dropped when less than
              ``min_coverage`` of it is audio (unless it is the only one) -- Resemblyzer's
              ``compute_partial_slices``, for any length
    network   per window: 3-layer LSTM (hidden 256) -> last layer's final hidden state ->
              Linear(256 -> 256) -> ReLU -> L2 normalisation
    utterance the mean of the window embeddings, L2-normalised

Input [batch, samples] of 16 kHz audio in [-1, 1]; all items share the length, so they share the
windows and each item gets what ``embed_utterance`` gives for it alone. Resemblyzer's
``preprocess_wav`` (volume normalisation, webrtcvad silence trimming) is not part of the network.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400            # 25 ms at 16 kHz (Resemblyzer's mel_window_length)
HOP = 160              # 10 ms (mel_window_step)
PARTIAL_FRAMES = 160   # 1.6 s per partial utterance (partials_n_frames)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def slaney_mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = 40) -> np.ndarray:
    """float32 [n_mels, n_fft // 2 + 1]: librosa's ``filters.mel(sr, n_fft, n_mels)`` (fmin 0, fmax sr/2,
    Slaney scale, ``norm='slaney'``), with its rounding: weights stored as float32, then area-normalised."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def window_starts(n_samples: torch.Tensor, rate: float = 1.3, min_coverage: float = 0.75
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resemblyzer's ``compute_partial_slices`` for an utterance of ``n_samples`` (a 0-dim int64 tensor):
    the first frame of each partial window [windows], and whether the last one is kept (0-dim bool).

    Tensor arithmetic only, so that a traced model (``pyspeaker export``) finds the windows of any length.
    """
    step = partial_step(rate)
    n_frames = (n_samples + HOP) // HOP                      # ceil((n + 1) / HOP)
    steps = torch.clamp(n_frames - PARTIAL_FRAMES + step + 1, min=1)
    starts = torch.arange(0, steps, step, device=n_samples.device)
    # the last window is dropped when less than min_coverage of it is audio, unless it is the only one
    coverage = (n_samples - starts[-1] * HOP).double() / (PARTIAL_FRAMES * HOP)
    return starts, (coverage >= min_coverage) | (starts.numel() == 1)


def partial_windows(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
    """The first frame of each partial window Resemblyzer uses for ``n_samples`` samples."""
    starts, keep_last = window_starts(torch.tensor(int(n_samples)), rate, min_coverage)
    starts = starts.tolist()
    return starts if bool(keep_last) else starts[:-1]


def partial_step(rate: float) -> int:
    """Frames between two partial windows at ``rate`` windows per second (ValueError when impossible)."""
    step = int(np.round((SAMPLE_RATE / rate) / HOP)) if rate > 0 else 0
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} gives a window step of {step} frames; it must be 1 to {PARTIAL_FRAMES} "
                         f"(rate at least {SAMPLE_RATE / (HOP * PARTIAL_FRAMES)} per second)")
    return step


class ResemblyzerLSTM(nn.Module):
    """Resemblyzer's ``VoiceEncoder`` with its front-end and partial-window averaging (see the module doc).

    Tensors ``lstm.*`` and ``linear.*`` as in Resemblyzer's ``model_state``; the mel filterbank and
    the window are computed, not stored.
    """

    takes_waveform = True

    def __init__(self, nOut: int = 256, hidden: int = 256, layers: int = 3, n_mels: int = 40,
                 rate: float = 1.3, min_coverage: float = 0.75):
        super().__init__()
        partial_step(rate)  # refuse an impossible rate at build time, not at the first utterance
        if not 0 < min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.rate, self.min_coverage = float(rate), float(min_coverage)
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, nOut)
        # not persistent: they follow from the settings, so checkpoints hold only Resemblyzer's tensors
        self.register_buffer("mel_basis", torch.from_numpy(slaney_mel_filterbank(n_mels=n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True, dtype=torch.float64), persistent=False)

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Power mel spectrogram [batch, frames, n_mels] of [batch, samples], as librosa computes it."""
        # librosa multiplies float32 frames by a float64 window and rounds the FFT to complex64
        dtype = torch.float32 if wav.device.type == "mps" else torch.float64
        spec = torch.stft(wav.to(dtype), N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window.to(dtype),
                          center=True, pad_mode="constant", return_complex=True)
        power = spec.to(torch.complex64).abs() ** 2                       # [batch, bins, frames]
        return torch.matmul(self.mel_basis, power).transpose(1, 2)       # [batch, frames, n_mels]

    def embed_partials(self, mels: torch.Tensor) -> torch.Tensor:
        """``VoiceEncoder.forward``: L2-normalised embeddings [n, nOut] of mel windows [n, frames, n_mels]."""
        _, (hidden, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(hidden[-1])), dim=1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [batch, nOut] of 16 kHz samples [batch, samples]."""
        if wav.dim() != 2:
            raise ValueError(f"ResemblyzerLSTM takes samples [batch, samples], got shape {list(wav.shape)}")
        batch = wav.shape[0]
        starts, keep_last = window_starts(torch._shape_as_tensor(wav)[1].to(wav.device), self.rate, self.min_coverage)
        # Resemblyzer zero-pads so the last window fits, and librosa's centred frames pad with zeros too:
        # the signal is the samples followed by zeros either way, so a fixed pad long enough for any
        # window gives the same frames (and keeps the graph free of length-dependent padding)
        mel = self.mel(F.pad(wav.float(), (0, (PARTIAL_FRAMES + 1) * HOP)))
        index = starts[:, None] + torch.arange(PARTIAL_FRAMES, device=wav.device)
        mels = mel[:, index]                                             # [batch, windows, 160, n_mels]
        partials = self.embed_partials(mels.reshape(-1, PARTIAL_FRAMES, mels.shape[-1]))
        partials = partials.view(batch, -1, partials.shape[-1])
        # a dropped last window gets weight 0; the mean's 1/windows is dropped too, the L2 norm undoes it
        weight = torch.ones_like(starts, dtype=partials.dtype)
        weight[-1] = keep_last.to(partials.dtype)
        return F.normalize((partials * weight[:, None]).sum(dim=1), dim=1)
