"""On-the-fly augmentation, as in the VoxCeleb recipes (Kaldi v2, voxceleb_trainer, WeSpeaker).

Waveform augmentation (training from audio), one kind per augmented crop, chosen uniformly among
those available:

- ``reverb``: convolution with a room impulse response (energy-normalised, aligned on its
  direct-path peak so that the speech is not delayed), from ``rir_dir``;
- ``noise`` / ``music``: one MUSAN noise / music recording at a random SNR in the configured range;
- ``babble``: 3-7 MUSAN speech recordings (``babble_speakers``), each at its own random SNR.

``noise_dir`` has MUSAN's layout (``noise/``, ``music/``, ``speech/`` sub-folders, searched
recursively for audio files), or is a Kaldi data dir (``wav.scp``) of MUSAN files, whose category
is the first of noise/music/speech that starts the utterance id or names a folder of the path
(MUSAN's file names are like ``noise-free-sound-0000``). ``rir_dir`` is a folder of impulse
responses (searched recursively) or a data dir. Each crop's choices come from a generator
seeded by (seed, epoch, utterance), so runs repeat exactly.

SpecAugment (any input): ``freq_masks`` bands of up to ``freq_width`` bins and ``time_masks``
spans of up to ``time_width`` frames per example are set to that example's mean value.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from pyspeaker.errors import DataError
from pyspeaker.log import get_logger

log = get_logger(__name__)

NOISE_KINDS = ("noise", "music", "speech")
AUDIO_SUFFIXES = (".wav", ".flac")


def _category(utt: str, path: str) -> str | None:
    for kind in NOISE_KINDS:
        if utt.startswith(kind):
            return kind
    for part in Path(path).parts[:-1]:
        if part in NOISE_KINDS:
            return part
    return None


def _scan_audio(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_noise_dir(path: str | os.PathLike) -> dict[str, list[str]]:
    """{noise|music|speech: [audio entries]} from a MUSAN folder or a data dir of MUSAN files."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("augmentation noise directory not found", path=root)
    out: dict[str, list[str]] = {k: [] for k in NOISE_KINDS}
    unknown = 0
    if (root / "wav.scp").is_file():
        from pyspeaker.data.kaldi_dir import read_table

        for _, utt, entry in read_table(root / "wav.scp", max_fields=None, rest_of_line=True):
            kind = _category(utt, entry)
            if kind is None:
                unknown += 1
            else:
                out[kind].append(entry)
    else:
        for f in _scan_audio(root):
            rel = f.relative_to(root)
            kind = next((p for p in rel.parts[:-1] if p in NOISE_KINDS), None) or _category(f.stem, "")
            if kind is None:
                unknown += 1
            else:
                out[kind].append(str(f))
    if unknown:
        log.warning("%s: %d recordings are neither noise, music nor speech (by id or folder) and are not used",
                    root, unknown)
    if not any(out.values()):
        raise DataError("no noise, music or speech recordings found (expected MUSAN's noise/, music/, speech/ "
                        "folders or a wav.scp of MUSAN files)", path=root)
    return out


def read_rir_dir(path: str | os.PathLike) -> list[str]:
    root = Path(path)
    if not root.is_dir():
        raise DataError("room impulse response directory not found", path=root)
    if (root / "wav.scp").is_file():
        from pyspeaker.data.kaldi_dir import read_table

        entries = [entry for _, _, entry in read_table(root / "wav.scp", max_fields=None, rest_of_line=True)]
    else:
        entries = [str(p) for p in _scan_audio(root)]
    if not entries:
        raise DataError("no room impulse responses (audio files or wav.scp) found", path=root)
    return entries


def read_segment(entry: str, length: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """``length`` samples from a random point of a recording (wrapped around when it is shorter)."""
    from pyspeaker.audio import read_random_span

    return read_random_span(entry, length, rng, sample_rate)


def _power_db(x: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-4)


class WaveAugment:
    """Picks and applies one waveform augmentation per crop (or none, with 1 - ``prob``)."""

    def __init__(self, cfg: dict, sample_rate: int):
        self.prob = float(cfg["prob"])
        self.sample_rate = int(sample_rate)
        self.snr = {"noise": cfg["noise_snr"], "music": cfg["music_snr"], "speech": cfg["babble_snr"]}
        self.babble_speakers = tuple(int(v) for v in cfg["babble_speakers"])
        self.noises = read_noise_dir(cfg["noise_dir"]) if cfg.get("noise_dir") else {k: [] for k in NOISE_KINDS}
        self.rirs = read_rir_dir(cfg["rir_dir"]) if cfg.get("rir_dir") else []
        self.kinds = (["reverb"] if self.rirs else []) + [
            {"speech": "babble"}.get(k, k) for k in NOISE_KINDS if self.noises[k]]

    def describe(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.noises.items() if v)
        rirs = f"{len(self.rirs)} RIRs" if self.rirs else ""
        return f"{' + '.join(self.kinds)} (p={self.prob:g}; {', '.join(s for s in (counts, rirs) if s)})"

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.kinds or rng.random() >= self.prob:
            return wav
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "reverb":
            return self.reverberate(wav, rng)
        return self.add_noise(wav, "speech" if kind == "babble" else kind, rng)

    def reverberate(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import fftconvolve

        entry = self.rirs[int(rng.integers(len(self.rirs)))]
        rir = read_whole(entry, self.sample_rate)
        rir = rir / max(float(np.sqrt(np.sum(rir.astype(np.float64) ** 2))), 1e-8)
        peak = int(np.argmax(np.abs(rir)))
        out = fftconvolve(wav, rir, mode="full")[peak:peak + len(wav)]
        return out.astype(np.float32)

    def add_noise(self, wav: np.ndarray, category: str, rng: np.random.Generator) -> np.ndarray:
        files = self.noises[category]
        count = int(rng.integers(self.babble_speakers[0], self.babble_speakers[1] + 1)) if category == "speech" else 1
        picks = rng.choice(len(files), size=min(count, len(files)), replace=False)
        clean_db = _power_db(wav)
        low, high = self.snr[category]
        out = wav.astype(np.float32).copy()
        for k in picks:
            noise = read_segment(files[int(k)], len(wav), rng, self.sample_rate)
            snr = float(rng.uniform(low, high))
            out += np.float32(math.sqrt(10.0 ** ((clean_db - _power_db(noise) - snr) / 10.0))) * noise
        return out


def read_whole(entry: str, sample_rate: int) -> np.ndarray:
    from pyspeaker.audio import load_audio

    x, _ = load_audio(entry, expected_sample_rate=sample_rate)
    return x


def speed_perturb(wav: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """The waveform played ``factor`` times faster (shorter and higher for factor > 1), as sox speed."""
    if factor == 1.0:
        return wav
    from pyspeaker.audio import resample

    return resample(wav, int(round(sample_rate * factor)), sample_rate)


def spec_augment(feats: torch.Tensor, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int) -> torch.Tensor:
    """SpecAugment masks on features [batch, time, dim]; masked cells get the example's mean."""
    b, t, f = feats.shape
    keep = torch.ones(b, t, f, dtype=torch.bool, device=feats.device)

    def bands(count: int, width: int, size: int) -> torch.Tensor:
        hit = torch.zeros(b, size, dtype=torch.bool, device=feats.device)
        pos = torch.arange(size, device=feats.device)
        for _ in range(count):
            w = torch.randint(0, min(width, size) + 1, (b, 1), device=feats.device)
            start = (torch.rand(b, 1, device=feats.device) * (size - w + 1)).long()
            hit |= (pos >= start) & (pos < start + w)
        return hit

    if freq_masks and freq_width:
        keep &= ~bands(freq_masks, freq_width, f).unsqueeze(1)
    if time_masks and time_width:
        keep &= ~bands(time_masks, time_width, t).unsqueeze(2)
    mean = feats.mean(dim=(1, 2), keepdim=True)
    return torch.where(keep, feats, mean.to(feats.dtype))
