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

The recordings are held in banks (``training/banks.py``): decoded once, memory-mapped, no file
opened per crop. Each crop's choices are drawn by ``WaveAugment.draw`` (a ``CropDraw``); the
loader gathers the noise segments and RIRs they name and hands the raw crops and draws over as a
``RawBatch``; ``BatchAugmenter.apply`` then resamples (speed perturbation), mixes at the drawn
SNRs, convolves (FFT, batched), computes the features and applies SpecAugment as tensor
operations on the training device, one batch at a time. ``WaveAugment.apply_draw`` is the
per-crop numpy reference of the same computation (tests compare the two).

SpecAugment (any input): ``freq_masks`` bands of up to ``freq_width`` bins and ``time_masks``
spans of up to ``time_width`` frames per example are set to that example's mean value; drawn per
crop by ``draw_masks`` when training from audio with features, else by ``spec_augment``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyspeaker.errors import ConfigError, DataError
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


def _power_db(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float32)
    return 10.0 * math.log10(float(np.dot(x, x)) / max(len(x), 1) + 1e-4)  # BLAS: no float64 copy


@dataclass
class CropDraw:
    """One crop's waveform augmentation: none, one RIR, or noise segments (bank index, start, SNR)."""

    kind: str | None = None                      # None | reverb | noise | music | babble
    rir: int = -1                                # index into the RIR bank
    noises: list[tuple[int, int, float]] = field(default_factory=list)


def check_snr_ranges(cfg: dict, where=None) -> None:
    for key in ("noise_snr", "music_snr", "babble_snr"):
        low, high = cfg[key]
        if low > high:
            raise ConfigError(f"augment.{key} is [{low:g}, {high:g}]: the minimum SNR is above the maximum", path=where)


class WaveAugment:
    """Draws one waveform augmentation per crop (or none, with 1 - ``prob``) from the noise and RIR
    banks; ``apply_draw`` is the per-crop reference, ``BatchAugmenter`` the batched path.

    ``crop_samples`` given: an RIR longer than the crop is refused. ``cache_dir``: where the banks
    are kept (None: in memory, for this process only).
    """

    def __init__(self, cfg: dict, sample_rate: int, crop_samples: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        from pyspeaker.training.banks import build_bank

        check_snr_ranges(cfg)
        self.prob = float(cfg["prob"])
        self.sample_rate = int(sample_rate)
        self.snr = {"noise": cfg["noise_snr"], "music": cfg["music_snr"], "speech": cfg["babble_snr"]}
        self.babble_speakers = tuple(int(v) for v in cfg["babble_speakers"])
        self.noise_bank = self.rir_bank = None
        self.noises: dict[str, np.ndarray] = {k: np.zeros(0, dtype=np.int64) for k in NOISE_KINDS}
        if cfg.get("noise_dir"):
            found = read_noise_dir(cfg["noise_dir"])
            self.noise_bank = build_bank("noise", [(k, e) for k, v in found.items() for e in v], self.sample_rate,
                                         cfg["noise_dir"], cache_dir)
            self.noises = {k: self.noise_bank.of_kind(k) for k in NOISE_KINDS}
        self.rirs = np.zeros(0, dtype=np.int64)
        if cfg.get("rir_dir"):
            self.rir_bank = build_bank("rir", [("rir", e) for e in read_rir_dir(cfg["rir_dir"])], self.sample_rate,
                                       cfg["rir_dir"], cache_dir)
            self.rirs = np.arange(len(self.rir_bank), dtype=np.int64)
            if crop_samples is not None:
                lengths = np.diff(self.rir_bank.offsets)
                i = int(np.argmax(lengths))
                if lengths[i] > crop_samples:
                    sr = self.sample_rate
                    raise DataError(f"room impulse response {self.rir_bank.entries[i]} has {lengths[i]} samples "
                                    f"({lengths[i] / sr:.2f} s), longer than the training crop of {crop_samples} "
                                    f"samples ({crop_samples / sr:.2f} s): use shorter RIRs or a longer "
                                    "data.crop_frames", path=cfg["rir_dir"])
        self.kinds = (["reverb"] if len(self.rirs) else []) + [
            {"speech": "babble"}.get(k, k) for k in NOISE_KINDS if len(self.noises[k])]

    def describe(self) -> str:
        counts = ", ".join(f"{len(v)} {k}" for k, v in self.noises.items() if len(v))
        rirs = f"{len(self.rirs)} RIRs" if len(self.rirs) else ""
        return f"{' + '.join(self.kinds)} (p={self.prob:g}; {', '.join(s for s in (counts, rirs) if s)})"

    # -- draws (the only use of the crop's generator)
    def draw(self, rng: np.random.Generator, length: int) -> CropDraw:
        if not self.kinds or rng.random() >= self.prob:
            return CropDraw()
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind == "reverb":
            return CropDraw("reverb", rir=int(self.rirs[int(rng.integers(len(self.rirs)))]))
        return self._noise_draw("speech" if kind == "babble" else kind, rng, length)

    def _noise_draw(self, category: str, rng: np.random.Generator, length: int) -> CropDraw:
        files = self.noises[category]
        count = int(rng.integers(self.babble_speakers[0], self.babble_speakers[1] + 1)) if category == "speech" else 1
        picks = rng.choice(len(files), size=min(count, len(files)), replace=False)
        low, high = self.snr[category]
        noises = []
        for k in picks:
            idx = int(files[int(k)])
            start = self.noise_bank.segment_start(idx, length, rng)
            noises.append((idx, start, float(rng.uniform(low, high))))
        return CropDraw({"speech": "babble"}.get(category, category), noises=noises)

    def rir(self, i: int) -> tuple[np.ndarray, int]:
        """RIR ``i`` energy-normalised, and the position of its direct-path peak."""
        rir = np.asarray(self.rir_bank.clip(i), dtype=np.float32)
        rir = rir / max(float(np.sqrt(np.sum(rir.astype(np.float64) ** 2))), 1e-8)
        return rir, int(np.argmax(np.abs(rir)))

    # -- the per-crop reference
    def apply_draw(self, wav: np.ndarray, d: CropDraw) -> np.ndarray:
        if d.kind is None:
            return wav
        if d.kind == "reverb":
            from scipy.signal import fftconvolve

            rir, peak = self.rir(d.rir)
            return fftconvolve(wav, rir, mode="full")[peak:peak + len(wav)].astype(np.float32)
        clean_db = _power_db(wav)
        out = wav.astype(np.float32).copy()
        for idx, start, snr in d.noises:
            noise = self.noise_bank.segment(idx, start, len(wav))
            out += np.float32(math.sqrt(10.0 ** ((clean_db - _power_db(noise) - snr) / 10.0))) * noise
        return out

    def __call__(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply_draw(wav, self.draw(rng, len(wav)))

    def reverberate(self, wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply_draw(wav, CropDraw("reverb", rir=int(self.rirs[int(rng.integers(len(self.rirs)))])))

    def add_noise(self, wav: np.ndarray, category: str, rng: np.random.Generator) -> np.ndarray:
        return self.apply_draw(wav, self._noise_draw(category, rng, len(wav)))


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


# ----------------------------------------------------------------------------- per-crop SpecAugment draws

def draw_masks(rng: np.random.Generator, count: int, width: int, size: int) -> np.ndarray:
    """[count, 2] (start, width) of SpecAugment bands drawn from a crop's generator."""
    out = np.zeros((count, 2), dtype=np.int64)
    for j in range(count if width else 0):
        w = int(rng.integers(0, min(width, size) + 1))
        out[j] = int(rng.random() * (size - w + 1)), w
    return out


def masks_reference(feats: np.ndarray, freq: np.ndarray, time: np.ndarray) -> np.ndarray:
    """One crop's features [time, dim] with its drawn bands set to its mean (the per-crop reference)."""
    out = feats.copy()
    mean = feats.astype(np.float64).mean().astype(np.float32)
    for s, w in freq:
        out[:, s:s + w] = mean
    for s, w in time:
        out[s:s + w, :] = mean
    return out


def apply_masks(feats: torch.Tensor, freq: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """Features [batch, time, dim] with each example's bands ([batch, k, 2] start, width) set to its mean."""
    b, t, f = feats.shape

    def hit(bands: torch.Tensor, size: int) -> torch.Tensor:
        pos = torch.arange(size, device=feats.device)
        start, width = bands[..., :1], bands[..., 1:]
        return ((pos >= start) & (pos < start + width)).any(dim=1)  # [batch, size]

    masked = torch.zeros(b, t, f, dtype=torch.bool, device=feats.device)
    if freq.shape[1]:
        masked |= hit(freq, f).unsqueeze(1)
    if time.shape[1]:
        masked |= hit(time, t).unsqueeze(2)
    mean = feats.mean(dim=(1, 2), keepdim=True)
    return torch.where(masked, mean.to(feats.dtype), feats)


# ----------------------------------------------------------------------------- the batched path

def _pin(x):
    return x.pin_memory() if isinstance(x, torch.Tensor) else x


@dataclass
class RawBatch:
    """What the loader hands over: raw crops and the draws, gathered from the banks."""

    labels: torch.Tensor                         # [n] speaker labels
    waves: list                                  # [(rows [k], crops [k, samples], speed factor)]
    noise: torch.Tensor                          # [m, need] each noisy crop's segments, weighted (noise_mix)
    noise_row: torch.Tensor                      # [m] the crop each mix goes into
    rir: torch.Tensor                            # [r, longest] normalised RIRs (zero-padded)
    rir_row: torch.Tensor                        # [r] the crop each one reverberates
    rir_peak: torch.Tensor                       # [r] its direct-path peak
    freq_masks: torch.Tensor                     # [n, k, 2] SpecAugment bands (start, width)
    time_masks: torch.Tensor                     # [n, k, 2]
    seed: int = 0                                # seeds the feature dither of the batch

    def pin_memory(self) -> "RawBatch":
        return RawBatch(_pin(self.labels), [(_pin(r), _pin(w), f) for r, w, f in self.waves],
                        *(_pin(getattr(self, k)) for k in ("noise", "noise_row", "rir", "rir_row",
                                                            "rir_peak", "freq_masks", "time_masks")), self.seed)


def noise_mix(aug: WaveAugment, d: CropDraw, need: int, out: np.ndarray) -> np.ndarray:
    """A noisy crop's segments summed, each weighted by 10^(-(its power dB + its SNR) / 20): the
    device multiplies the mix by 10^(clean power dB / 20), which gives every segment the gain
    sqrt(10^((clean dB - noise dB - SNR) / 10)) of the per-crop reference. Summed here because
    the clean crop's power is not needed for it: babble's 3-7 segments cross to the device as one."""
    for k, (idx, start, snr) in enumerate(d.noises):
        seg = aug.noise_bank.segment(idx, start, need)
        w = np.float32(10.0 ** (-(_power_db(seg) + snr) / 20.0))
        if k == 0:
            np.multiply(seg, w, out=out)
        else:
            out += w * seg
    return out


def gather_draws(aug: WaveAugment | None, draws: list[CropDraw], need: int):
    """The noise mixes and RIRs that ``draws`` name, as RawBatch tensors (noise..., rir...)."""
    seg_row, rirs, rir_row, peaks = [], [], [], []
    noisy = sum(1 for d in draws if d.kind != "reverb" and d.noises)
    noise = torch.empty(noisy, need)
    for row, d in enumerate(draws):
        if d.kind == "reverb":
            h, p = aug.rir(d.rir)
            rirs.append(h)
            rir_row.append(row)
            peaks.append(p)
        elif d.noises:
            noise_mix(aug, d, need, noise[len(seg_row)].numpy())  # written in place: no stack copy
            seg_row.append(row)
    longest = max((len(h) for h in rirs), default=0)
    rir = torch.zeros(len(rirs), longest)
    for k, h in enumerate(rirs):
        rir[k, :len(h)] = torch.from_numpy(h)
    return (noise, torch.tensor(seg_row, dtype=torch.long), rir, torch.tensor(rir_row, dtype=torch.long),
            torch.tensor(peaks, dtype=torch.long))


def _power_db_t(x: torch.Tensor) -> torch.Tensor:
    # one float32 reduction kernel, float64 only for the [rows] result: a float64 copy of the batch
    # (the per-crop reference's arithmetic) costs 40x as much
    return 10.0 * torch.log10(torch.linalg.vector_norm(x, dim=1).double() ** 2 / x.shape[1] + 1e-4)


def fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= ``n``: a linear convolution's FFT length that pocketfft and cuFFT
    do as fast as a power of two (2 s + 0.5 s at 16 kHz: 40,000, not 65,536, which is 3x slower)."""
    best = 1 << max(int(n) - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Rows cut to ``n`` samples, or wrapped around (``np.resize``) when shorter."""
    if x.shape[1] >= n:
        return x[:, :n]
    return x[:, torch.arange(n, device=x.device) % x.shape[1]]


class BatchAugmenter:
    """Turns a RawBatch into network inputs on ``device``: speed perturbation, noise at the drawn
    SNRs, FFT reverberation, features and SpecAugment, as tensor operations on the whole batch.

    ``feature_cfg`` None: the waveforms [n, need] (a waveform model computes its features).
    """

    def __init__(self, need: int, sample_rate: int, feature_cfg=None, crop_frames: int | None = None,
                 device: str | torch.device = "cpu", masks: bool = False):
        self.need, self.sample_rate, self.feature_cfg = int(need), int(sample_rate), feature_cfg
        self.crop_frames = crop_frames
        self.device = torch.device(device)
        self.masks = bool(masks)
        self._extractor = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_extractor"] = None
        return state

    def extractor(self, device: torch.device):
        if self._extractor is None or self._extractor.device != device:
            from pyspeaker.features import FeatureExtractor

            self._extractor = FeatureExtractor(self.feature_cfg, device)
        return self._extractor

    def waveforms(self, batch: RawBatch, device: torch.device) -> torch.Tensor:
        import torchaudio.functional as AF

        n, sr = batch.labels.shape[0], self.sample_rate
        wav = torch.empty(n, self.need, device=device)
        for rows, x, factor in batch.waves:
            x = x.to(device, non_blocking=True)
            if factor != 1.0:  # speed: the crop read as if recorded at sr * factor (audio.resample's filter)
                rate = int(round(sr * factor))
                g = math.gcd(rate, sr)
                x = AF.resample(x, rate // g, sr // g)
            wav[rows.to(device)] = fit_length(x, self.need)
        if batch.noise.shape[0]:
            row = batch.noise_row.to(device)
            seg = batch.noise.to(device, non_blocking=True)
            gain = 10.0 ** (_power_db_t(wav[row]) / 20.0)  # see noise_mix
            wav[row] += seg * gain.float()[:, None]
        if batch.rir.shape[0]:
            row = batch.rir_row.to(device)
            h = batch.rir.to(device, non_blocking=True)
            size = fft_size(self.need + h.shape[1] - 1)
            y = torch.fft.irfft(torch.fft.rfft(wav[row], size) * torch.fft.rfft(h, size), size)
            idx = batch.rir_peak.to(device)[:, None] + torch.arange(self.need, device=device)
            wav[row] = y.gather(1, idx)
        return wav

    def apply(self, batch: RawBatch, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) on ``device`` (default: the augmenter's)."""
        device = self.device if device is None else torch.device(device)
        with torch.no_grad():
            wav = self.waveforms(batch, device)
            labels = batch.labels.to(device, non_blocking=True)
            if self.feature_cfg is None:
                return wav, labels
            ext = self.extractor(device)
            if self.feature_cfg.dither != 0.0:
                ext._generator = torch.Generator(device=device).manual_seed(int(batch.seed))
            feats = ext.batch_tensors(list(wav), self.sample_rate)
            crop = int(self.crop_frames)
            for i, f in enumerate(feats):
                if f.shape[0] == 0:
                    raise DataError("a training crop has no voiced frame (VAD): lower the VAD threshold or "
                                    "train without data.vad")
                if f.shape[0] != crop:
                    feats[i] = f[torch.arange(crop, device=device) % f.shape[0]] if f.shape[0] < crop else f[:crop]
            out = torch.stack(feats)
            if self.masks:
                out = apply_masks(out, batch.freq_masks.to(device), batch.time_masks.to(device))
            return out, labels


class OnDevice:
    """A DataLoader of RawBatches seen as one of (inputs, labels) on ``device``."""

    def __init__(self, loader, augmenter: BatchAugmenter, device):
        self.loader, self.augmenter, self.device = loader, augmenter, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield self.augmenter.apply(batch, self.device)
