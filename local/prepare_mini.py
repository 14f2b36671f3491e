#!/usr/bin/env python3
"""Generate the embedded default corpus: synthetic multi-speaker "speech" plus Kaldi data dirs.

    python local/prepare_mini.py --audio-dir data/mini_audio --data-dir data   (--help: every option)

Every speaker gets a voice drawn from the seed (F0 and intonation range, vocal-tract length,
formant bandwidths, glottal pulse shape, spectral tilt, jitter, shimmer, breathiness, nasality,
speaking rate, idiolectal vowel targets).  Utterances are source-filter syntheses of random
syllable sequences: Rosenberg glottal pulses (with jitter/shimmer and pulsed aspiration noise)
through a cascade of five 2nd-order formant resonators plus a nasal pole-zero pair, shaped noise
for fricatives, bursts and aspiration, voiced consonants and pauses.  The formant filter is
time-varying, so it is applied frame by frame (50 % overlap-add, the resonators' exact transfer
functions multiplied in the FFT domain), which keeps the whole synthesis vectorised.

Each utterance then passes a random "session": pitch/rate/effort shifts within the speaker's
range, a channel (band limits, peaking EQ, tilt, optional small room), background noise at
20-40 dB SNR and a random level, so speakers are distinguishable but not trivially (not by
loudness, not by the channel).

Everything is seeded per (seed, speaker) and (seed, speaker, utterance), so the output is
byte-identical whatever ``--jobs`` is.  Outputs are written atomically:
``AUDIO/<spk>/<utt>.wav`` (16-bit PCM mono) and ``DATA/{train,test}/{wav.scp,utt2spk,spk2utt,
utt2dur}`` plus ``DATA/test/trials``.
"""
from __future__ import annotations

import functools
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Parallelism comes from --jobs processes; BLAS threads would only fight over the same cores
# (the small per-frame matmuls got several times slower with two threads on a busy machine).
# Set before numpy is imported and inherited by the workers; importing this file as a module
# leaves the caller's environment alone.
if __name__ in ("__main__", "__mp_main__"):
    for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[_var] = "1"

# Lets the script run as `python local/prepare_mini.py` without installing the package.
_REPO_ROOT = Path(__file__).resolve().parent.parent
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import click  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy import fft as sfft  # noqa: E402

from pyspeaker.errors import ConfigError  # noqa: E402
from pyspeaker.fileio import atomic_dir  # noqa: E402

# Seed-stream tags: speakers, utterances and trials draw from independent streams.
_SPK_STREAM, _UTT_STREAM, _TRIAL_STREAM = 1, 2, 3

# Adult male vowel formants F1-F4 in Hz (Hillenbrand et al. 1995 averages); F5 is added below.
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (342, 2322, 3000, 3657), "I": (427, 2034, 2684, 3618), "e": (476, 2089, 2691, 3649),
    "E": (580, 1799, 2605, 3677), "ae": (588, 1952, 2601, 3624), "a": (768, 1333, 2522, 3687),
    "O": (652, 997, 2538, 3486), "o": (497, 910, 2459, 3384), "U": (469, 1122, 2434, 3400),
    "u": (378, 997, 2343, 3357), "V": (623, 1200, 2550, 3557), "3": (474, 1379, 1710, 3334),
}
VOWEL_NAMES = list(VOWELS)
F5_HZ = 4500.0
BASE_BANDWIDTHS = np.array([60.0, 90.0, 150.0, 200.0, 300.0])
NOMINAL_FORMANTS = np.array([500.0, 1500.0, 2500.0, 3500.0, F5_HZ])

# Voiced consonant targets F1-F4 in Hz (adult male; scaled per speaker like the vowels).
NASALS = {"m": (250, 1000, 2200, 3300), "n": (250, 1500, 2600, 3400), "N": (250, 2000, 2700, 3400)}
APPROXIMANTS = {"w": (300, 700, 2200, 3300), "j": (280, 2200, 2900, 3500),
                "l": (360, 1000, 2800, 3400), "r": (350, 1100, 1500, 3200)}
# Frication: centre frequency (male-scaled), bandwidth, high-pass zero, amplitude.
FRICATIVES = {"s": (5500, 2000, 0.9, 1.0), "S": (2900, 1400, 0.8, 0.9),
              "f": (5000, 6000, 0.3, 0.28), "T": (6000, 5000, 0.3, 0.22)}
VOICED_FRICATIVES = {"z": "s", "v": "f"}
# Stop bursts by place (labial, alveolar, velar): centre frequency, bandwidth.
BURSTS = {"p": (900, 1800), "t": (4200, 2500), "k": (2100, 1200)}
VOICED_STOPS = {"b": "p", "d": "t", "g": "k"}

# Session variability (tuned so a crude mean-spectrum baseline is neither trivial nor hopeless).
TILT_RANGE = (-5.0, 3.0)    # speaker source tilt, dB/octave
EFFORT_TILT = 1.0           # per-utterance change of the tilt, +- dB/octave
EQ_STD_DB = 5.0             # channel peaking-EQ gains (three bands)
CHANNEL_TILT = 0.4          # first-order channel tilt coefficient, +-
LOWPASS_PROB = 0.6
LOWPASS_HZ = (3400.0, 7600.0)


@dataclass(frozen=True)
class Voice:
    """One speaker's fixed traits (drawn from the seed)."""

    f0_mean: float          # Hz
    f0_range: float         # intonation excursion, semitones
    declination: float      # semitones fall over an utterance
    formant_scale: float    # 1 / relative vocal-tract length
    bandwidth_scale: float
    vowel_offsets: np.ndarray   # (n_vowels, 4) idiolectal log-factors on F1-F4
    vowel_weights: np.ndarray   # vowel usage preferences
    open_quotient: float
    speed_quotient: float
    tilt_db_oct: float      # extra source tilt, dB per octave
    jitter: float           # relative period perturbation (std)
    shimmer: float          # relative amplitude perturbation (std)
    breathiness: float      # aspiration noise relative to voicing
    nasality: float         # velopharyngeal coupling on vowels, 0..1
    nasal_pole: float       # Hz
    fric_scale: float       # fricative/burst spectrum scale
    rate: float             # speaking-rate factor (>1 = faster)
    hypo_zero: float        # Hz: fixed antiresonance of the lower vocal tract (piriform sinuses)
    hypo_zero_bw: float     # Hz


@dataclass(frozen=True)
class Settings:
    seed: int
    sample_rate: int
    min_duration: float
    max_duration: float


def draw_voice(seed: int, spk_num: int) -> Voice:
    """A speaker's voice, a pure function of (seed, speaker number)."""
    rng = np.random.default_rng([seed, _SPK_STREAM, spk_num])
    female = rng.random() < 0.5
    # Female voices: higher F0 and shorter vocal tracts, with overlap between the groups.
    f0_mean = float(np.exp(rng.uniform(np.log(160), np.log(260)) if female
                           else rng.uniform(np.log(85), np.log(155))))
    formant_scale = float(rng.uniform(1.02, 1.20) if female else rng.uniform(0.84, 1.04))
    n_vowels = len(VOWEL_NAMES)
    return Voice(
        f0_mean=f0_mean,
        f0_range=float(rng.uniform(1.0, 4.5)),
        declination=float(rng.uniform(0.0, 3.0)),
        formant_scale=formant_scale,
        bandwidth_scale=float(rng.uniform(0.8, 1.5)),
        vowel_offsets=rng.normal(0.0, 0.05, size=(n_vowels, 4)),
        vowel_weights=rng.dirichlet(np.full(n_vowels, 3.0)),
        open_quotient=float(rng.uniform(0.45, 0.8)),
        speed_quotient=float(rng.uniform(1.5, 4.0)),
        tilt_db_oct=float(rng.uniform(TILT_RANGE[0], TILT_RANGE[1])),
        jitter=float(rng.uniform(0.003, 0.02)),
        shimmer=float(rng.uniform(0.02, 0.12)),
        breathiness=float(rng.uniform(0.0, 0.3)),
        nasality=float(rng.uniform(0.0, 0.4)),
        nasal_pole=float(rng.uniform(230.0, 310.0)),
        fric_scale=float(formant_scale * rng.uniform(0.88, 1.12)),
        rate=float(rng.uniform(0.8, 1.25)),
        hypo_zero=float(formant_scale * rng.uniform(3800.0, 5200.0)),
        hypo_zero_bw=float(rng.uniform(250.0, 700.0)),
    )


# ----------------------------------------------------------------------------------------------
# Phone sequence -> segment table
# ----------------------------------------------------------------------------------------------

CONSONANT_KINDS = ["stop", "vstop", "fric", "vfric", "h", "nasal", "approx"]
CONSONANT_KIND_P = np.array([0.2, 0.12, 0.18, 0.08, 0.06, 0.18, 0.18])
SYLLABLES_P = np.array([0.4, 0.4, 0.2])   # words of 1, 2, 3 syllables


def _pick(rng: np.random.Generator, p: np.ndarray) -> int:
    """Index drawn with probabilities ``p`` (cheaper than Generator.choice for single draws)."""
    return min(int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")), len(p) - 1)


def _pick_key(rng: np.random.Generator, table: dict) -> str:
    keys = list(table)
    return keys[int(rng.random() * len(keys))]


class _Segments:
    """Accumulates segments; each has a length and the control values the synthesiser reads."""

    def __init__(self, voice: Voice, sr: int, rate: float, rng: np.random.Generator):
        self.voice, self.sr, self.rate, self.rng = voice, sr, rate, rng
        self.rows: list[tuple] = []  # (n, voicing, aspiration, frication, fc, bw, hp, nasal, F(4)|None, accent)
        self.total = 0

    def add(self, dur_s: float, voicing=0.0, aspiration=0.0, frication=0.0, fric=(3000.0, 3000.0, 0.0),
            nasal=0.0, formants=None, accent=0.0) -> None:
        n = max(1, int(round(dur_s / self.rate * self.sr)))
        self.rows.append((n, voicing, aspiration, frication, *fric, nasal, formants, accent))
        self.total += n

    def speaker_formants(self, male_hz, offsets=None) -> np.ndarray:
        f = np.asarray(male_hz, dtype=float) * self.voice.formant_scale
        return f if offsets is None else f * np.exp(offsets)

    def fric_params(self, name: str) -> tuple[float, float, float, float]:
        fc, bw, hp, amp = FRICATIVES[name]
        s = self.voice.fric_scale
        return fc * s, bw * s, hp, amp

    def vowel(self, stressed: bool) -> None:
        v = _pick(self.rng, self.voice.vowel_weights)
        formants = self.speaker_formants(VOWELS[VOWEL_NAMES[v]], self.voice.vowel_offsets[v])
        dur = self.rng.uniform(0.07, 0.16) * (1.4 if stressed else 1.0)
        accent = self.rng.uniform(0.5, 1.0) if stressed else 0.0
        self.add(dur, voicing=1.0, nasal=self.voice.nasality, formants=formants, accent=accent)

    def consonant(self) -> None:
        rng = self.rng
        kind = CONSONANT_KINDS[_pick(rng, CONSONANT_KIND_P)]
        if kind == "stop":
            fc, bw = BURSTS[_pick_key(rng, BURSTS)]
            s = self.voice.fric_scale
            self.add(rng.uniform(0.04, 0.08))                                   # closure
            self.add(rng.uniform(0.008, 0.015), frication=0.9, fric=(fc * s, bw * s, 0.5))
            self.add(rng.uniform(0.02, 0.05), aspiration=0.35)                  # aspiration
        elif kind == "vstop":
            fc, bw = BURSTS[VOICED_STOPS[_pick_key(rng, VOICED_STOPS)]]
            s = self.voice.fric_scale
            bar = self.speaker_formants((200, 1100, 2500, 3400))
            self.add(rng.uniform(0.03, 0.06), voicing=0.12, formants=bar)      # voice bar
            self.add(rng.uniform(0.005, 0.01), voicing=0.2, frication=0.5, fric=(fc * s, bw * s, 0.5),
                     formants=bar)
        elif kind == "fric":
            fc, bw, hp, amp = self.fric_params(_pick_key(rng, FRICATIVES))
            self.add(rng.uniform(0.06, 0.13), frication=amp, fric=(fc, bw, hp))
        elif kind == "vfric":
            fc, bw, hp, amp = self.fric_params(VOICED_FRICATIVES[_pick_key(rng, VOICED_FRICATIVES)])
            self.add(rng.uniform(0.05, 0.09), voicing=0.45, frication=0.5 * amp, fric=(fc, bw, hp),
                     formants=self.speaker_formants((280, 1500, 2500, 3400)))
        elif kind == "h":
            self.add(rng.uniform(0.05, 0.09), aspiration=0.5)
        elif kind == "nasal":
            self.add(rng.uniform(0.04, 0.09), voicing=0.4, nasal=1.0,
                     formants=self.speaker_formants(NASALS[_pick_key(rng, NASALS)]))
        else:
            self.add(rng.uniform(0.04, 0.08), voicing=0.7, nasal=self.voice.nasality,
                     formants=self.speaker_formants(APPROXIMANTS[_pick_key(rng, APPROXIMANTS)]))

    def word(self) -> None:
        rng = self.rng
        n_syl = 1 + _pick(rng, SYLLABLES_P)
        stress = int(rng.random() * n_syl)
        for i in range(n_syl):
            if rng.random() < 0.8:
                self.consonant()
            self.vowel(stressed=i == stress)
            if rng.random() < 0.35:
                self.consonant()

    def table(self) -> dict[str, np.ndarray]:
        """Segment rows as arrays; formants of unvoiced segments copied from the next voiced one."""
        n = np.array([r[0] for r in self.rows])
        cols = np.array([r[1:8] for r in self.rows], dtype=float)
        formants = [r[8] for r in self.rows]
        # Anticipatory coarticulation: silent/noise segments take the upcoming voiced targets
        # (aspiration in "h" is shaped by the following vowel), or the last ones at the end.
        nxt = None
        for i in range(len(formants) - 1, -1, -1):
            if formants[i] is None:
                formants[i] = nxt
            else:
                nxt = formants[i]
        prev = None
        for i, f in enumerate(formants):
            formants[i] = prev if f is None else f
            prev = formants[i]
        if formants[0] is None:  # no voiced segment at all
            formants = [self.speaker_formants(VOWELS["V"])] * len(formants)
        return {"n": n, "voicing": cols[:, 0], "aspiration": cols[:, 1], "frication": cols[:, 2],
                "fric_fc": cols[:, 3], "fric_bw": cols[:, 4], "fric_hp": cols[:, 5], "nasal": cols[:, 6],
                "formants": np.array(formants, dtype=float),
                "accent": np.array([r[9] for r in self.rows], dtype=float)}


def build_segments(voice: Voice, sr: int, n_speech: int, rate: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random words and pauses until ``n_speech`` samples are filled; the last segment is cut."""
    seg = _Segments(voice, sr, rate, rng)
    while seg.total < n_speech:
        seg.word()
        if seg.total < n_speech and rng.random() < 0.2:
            seg.add(rng.uniform(0.12, 0.45) * rate)   # a pause does not speed up with the rate
        elif seg.total < n_speech:
            seg.add(rng.uniform(0.0, 0.03))
    tab = seg.table()
    # A word adds several segments: drop those starting past the end, shorten the last one.
    starts = np.cumsum(tab["n"]) - tab["n"]
    keep = starts < n_speech
    tab = {k: v[keep] for k, v in tab.items()}
    tab["n"][-1] = n_speech - starts[keep][-1]
    return tab


# ----------------------------------------------------------------------------------------------
# Signal generation
# ----------------------------------------------------------------------------------------------

def _smooth(x: np.ndarray, width: int, passes: int = 2) -> np.ndarray:
    """Moving average applied ``passes`` times (triangular-ish), edge values held."""
    if width <= 1:
        return x
    for _ in range(passes):
        pad = np.concatenate([np.full(width, x[0]), x, np.full(width, x[-1])])
        c = np.cumsum(np.concatenate([[0.0], pad]))
        x = (c[width:] - c[:-width])[width // 2: width // 2 + len(x)] / width
    return x


def _ramped_track(values: np.ndarray, lengths: np.ndarray, ramp: float) -> np.ndarray:
    """Per-sample track holding each segment's value, with linear ramps of about ``ramp``
    samples across segment boundaries (never longer than half a neighbouring segment)."""
    if len(lengths) == 1:
        return np.full(int(lengths[0]), values[0])
    bounds = np.cumsum(lengths)[:-1]
    half = np.minimum(ramp / 2.0, np.minimum(lengths[:-1], lengths[1:]) / 2.0)
    xp = np.stack([bounds - half, bounds + half], axis=1).reshape(-1)
    fp = np.stack([values[:-1], values[1:]], axis=1).reshape(-1)
    return np.interp(np.arange(int(lengths.sum())), xp, fp, left=values[0], right=values[-1])


def _resonator(freq: np.ndarray, bw: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Denominator coefficients a1, a2 and unity-DC gain of a 2nd-order digital resonator."""
    r = np.exp(-np.pi * bw / sr)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freq / sr)
    a2 = r * r
    return a1, a2, 1.0 + a1 + a2


def _poly_mul2(poly: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    """Multiply each row polynomial (in z^-1) by 1 + a1 z^-1 + a2 z^-2."""
    m, order = poly.shape
    out = np.zeros((m, order + 2))
    out[:, :order] += poly
    out[:, 1:order + 1] += poly * a1[:, None]
    out[:, 2:] += poly * a2[:, None]
    return out


def _poly_response(coeffs: np.ndarray, nfft: int) -> np.ndarray:
    """Each row polynomial in z^-1 evaluated on the nfft//2+1 FFT bins (a small matmul, much
    cheaper than zero-padded FFTs of short rows)."""
    cos, sin = _dft_basis(coeffs.shape[1], nfft)
    out = np.empty((coeffs.shape[0], nfft // 2 + 1), dtype=np.complex64)
    out.real = coeffs @ cos
    out.imag = -(coeffs @ sin)
    return out


@functools.lru_cache(maxsize=16)
def _dft_basis(order: int, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(order)[:, None]
    w = 2.0 * np.pi * np.arange(nfft // 2 + 1)[None, :] / nfft
    return np.cos(k * w), np.sin(k * w)


def tract_response(formants: np.ndarray, bandwidths: np.ndarray, nasal: np.ndarray, voice: Voice,
                   sr: int, nfft: int) -> np.ndarray:
    """Per-frame frequency response of the cascade: 5 formants, a nasal pole-zero pair and the
    speaker's fixed hypopharyngeal (piriform) antiresonance."""
    m = formants.shape[0]
    den = np.ones((m, 1))
    gain = np.ones(m)
    for k in range(formants.shape[1]):
        f, b = formants[:, k], bandwidths[:, k]
        a1, a2, g = _resonator(f, b, sr)
        # A formant near or above Nyquist would alias: leave that section out.
        out = f >= 0.46 * sr
        a1, a2, g = np.where(out, 0.0, a1), np.where(out, 0.0, a2), np.where(out, 1.0, g)
        den = _poly_mul2(den, a1, a2)
        gain *= g
    fp = np.full(m, voice.nasal_pole)
    a1, a2, g = _resonator(fp, np.full(m, 100.0), sr)
    den = _poly_mul2(den, a1, a2)
    gain *= g
    # Velar coupling pushes the nasal zero up from the pole; with no coupling they cancel.
    z1, z2, gz = _resonator(fp * (1.0 + 0.9 * nasal), np.full(m, 100.0), sr)
    num = np.stack([np.ones(m), z1, z2], axis=1)
    if voice.hypo_zero < 0.46 * sr:
        y1, y2, gy = _resonator(np.full(m, voice.hypo_zero), np.full(m, voice.hypo_zero_bw), sr)
        num = _poly_mul2(num, y1, y2)
        gz = gz * gy
    h = _poly_response(num, nfft) / _poly_response(den, nfft)
    h *= (gain / gz).astype(np.float32)[:, None]
    return h


def frication_response(fc: np.ndarray, bw: np.ndarray, hp: np.ndarray, sr: int, nfft: int) -> np.ndarray:
    """Per-frame noise-shaping filter (resonance + high-pass zero), normalised to unit peak."""
    fc = np.minimum(fc, 0.42 * sr)
    a1, a2, _ = _resonator(fc, bw, sr)
    den = np.stack([np.ones_like(a1), a1, a2], axis=1)
    num = np.stack([np.ones_like(hp), -hp], axis=1)
    h = _poly_response(num, nfft) / _poly_response(den, nfft)
    return h / np.abs(h).max(axis=1, keepdims=True)


def glottal_source(f0: np.ndarray, voice: Voice, oq: float, sr: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rosenberg glottal flow and its derivative, with per-cycle jitter and shimmer."""
    phase0 = np.cumsum(f0) / sr
    n_cycles = int(phase0[-1]) + 2
    jitter = np.clip(1.0 + voice.jitter * rng.standard_normal(n_cycles), 0.7, 1.3)
    shimmer = np.exp(voice.shimmer * rng.standard_normal(n_cycles))
    phase = np.cumsum(f0 * jitter[phase0.astype(np.int64)]) / sr
    cycle = phase.astype(np.int64)
    t = phase - cycle
    sq = voice.speed_quotient
    tp, tn = oq * sq / (1.0 + sq), oq / (1.0 + sq)
    opening, closing = t < tp, (t >= tp) & (t < tp + tn)
    flow, dflow = np.zeros_like(t), np.zeros_like(t)
    a = np.pi * t[opening] / tp
    flow[opening] = 0.5 - 0.5 * np.cos(a)
    dflow[opening] = tn / tp * np.sin(a)      # d flow / d phase, scaled so the closing peak is -1
    b = 0.5 * np.pi * (t[closing] - tp) / tn
    flow[closing] = np.cos(b)
    dflow[closing] = -np.sin(b)
    amp = shimmer[np.minimum(cycle, n_cycles - 1)]
    return flow * amp, dflow * amp


def f0_contour(tab: dict[str, np.ndarray], voice: Voice, f0_base: float, sr: int, hop: int,
               n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frame-rate F0: declination, pitch accents on stressed vowels, slow wander, optional rise."""
    t = np.arange(n_frames) * hop
    total = max(1, t[-1])
    semis = voice.declination * (0.5 - t / total) * rng.uniform(0.6, 1.4)
    ends = np.cumsum(tab["n"])
    centres = ends - tab["n"] / 2
    width = 0.08 * sr
    for c, a in zip(centres[tab["accent"] > 0], tab["accent"][tab["accent"] > 0]):
        semis = semis + a * voice.f0_range * np.exp(-0.5 * ((t - c) / width) ** 2)
    wander = _smooth(rng.standard_normal(n_frames), max(1, int(0.15 * sr / hop)), passes=3)
    semis = semis + 0.3 * voice.f0_range * wander / (wander.std() + 1e-9)
    if rng.random() < 0.2:  # question-like final rise
        semis = semis + 4.0 * np.clip((t - 0.8 * total) / (0.2 * total), 0.0, 1.0) ** 2
    semis = semis - semis.mean()
    return f0_base * 2.0 ** (semis / 12.0)


def synthesize_speech(tab: dict[str, np.ndarray], voice: Voice, sr: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Source-filter synthesis of one segment table (no channel, no noise)."""
    n = int(tab["n"].sum())
    # Power-of-two hop (8 ms at 16 kHz) so the nfft = 4*hop output frames tile in whole blocks.
    hop = 1 << int(round(np.log2(0.008 * sr)))
    win, nfft = 2 * hop, 4 * hop
    n_frames = -(-n // hop) + 1          # frame m centred at sample m*hop

    # Per-utterance session shifts within the speaker's range.
    f0_base = voice.f0_mean * 2.0 ** (np.clip(rng.normal(0.0, 1.0), -2.5, 2.5) / 12.0)
    oq = float(np.clip(voice.open_quotient + rng.normal(0.0, 0.04), 0.3, 0.9))
    effort_tilt = voice.tilt_db_oct + rng.uniform(-EFFORT_TILT, EFFORT_TILT)

    # Sample-rate amplitude tracks: segment values joined by ~10 ms linear ramps.
    ramp = 0.01 * sr
    voicing = _ramped_track(tab["voicing"], tab["n"], ramp)
    aspiration = _ramped_track(tab["aspiration"], tab["n"], ramp)
    frication = _ramped_track(tab["frication"], tab["n"], ramp / 2)

    f0_frames = f0_contour(tab, voice, f0_base, sr, hop, n_frames, rng)
    f0 = np.interp(np.arange(n), np.arange(n_frames) * hop, f0_frames)
    flow, dflow = glottal_source(f0, voice, oq, sr, rng)
    # Breathy voice: aspiration noise pulsed with the glottal opening.
    noise_v = rng.standard_normal(n)
    excitation_v = (voicing * dflow
                    + 0.25 * noise_v * (voice.breathiness * voicing * (0.3 + flow) + aspiration))
    excitation_f = 0.3 * frication * rng.standard_normal(n)

    # Frame-rate filter parameters; formant targets smoothed over ~40 ms (coarticulation).
    frame_seg = np.searchsorted(np.cumsum(tab["n"]), np.minimum(np.arange(n_frames) * hop, n - 1), side="right")
    coart = max(1, int(round(0.024 * sr / hop)))
    formants = np.stack([_smooth(tab["formants"][frame_seg, k], coart) for k in range(4)], axis=1)
    formants = np.concatenate([formants, np.full((n_frames, 1), F5_HZ * voice.formant_scale)], axis=1)
    # Bandwidths grow a little with formant frequency (wider for higher-than-nominal formants).
    nominal = NOMINAL_FORMANTS * voice.formant_scale
    bandwidths = BASE_BANDWIDTHS * voice.bandwidth_scale * (formants / nominal) ** 0.3
    nasal = _smooth(tab["nasal"][frame_seg], coart)
    h_v = tract_response(formants, bandwidths, nasal, voice, sr, nfft)
    freqs = np.maximum(np.arange(nfft // 2 + 1) * sr / nfft, 100.0)
    h_v *= (10.0 ** (effort_tilt * np.log2(freqs / 1000.0) / 20.0)).astype(np.float32)
    # The frication filter is constant within a segment: evaluate it once per segment.
    h_f = frication_response(tab["fric_fc"], tab["fric_bw"], tab["fric_hp"], sr, nfft)[frame_seg]

    # 50 % overlap-add with a periodic Hann window (sums to one): frame m spans
    # samples (m-1)*hop .. (m+1)*hop; filtered frames are nfft long (room for the decay).
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
    pad_len = (n_frames + 1) * hop

    def frames(x: np.ndarray) -> np.ndarray:
        xp = np.zeros(pad_len)
        xp[hop:hop + n] = x
        blocks = xp.reshape(-1, hop)
        out = np.zeros((n_frames, nfft), dtype=np.float32)   # padded here: scipy's padding is slow
        out[:, :hop] = blocks[:-1] * window[:hop]
        out[:, hop:win] = blocks[1:] * window[hop:]
        return out

    spec = sfft.rfft(frames(excitation_v), axis=1) * h_v
    fric_frames = frames(excitation_f)
    active = np.any(fric_frames != 0.0, axis=1)   # frication is sparse: filter only where present
    spec[active] += sfft.rfft(fric_frames[active], axis=1) * h_f[active]
    out = sfft.irfft(spec, nfft, axis=1).astype(np.float64)
    n_blocks = n_frames + nfft // hop
    y = np.zeros((n_blocks, hop))
    for j in range(nfft // hop):
        y[j:j + n_frames] += out[:, j * hop:(j + 1) * hop]
    return y.reshape(-1)[hop:hop + n]


def _peaking(f: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ peaking-EQ biquad."""
    a = 10.0 ** (gain_db / 40.0)
    w = 2.0 * np.pi * f / sr
    alpha = np.sin(w) / (2.0 * q)
    b = np.array([1.0 + alpha * a, -2.0 * np.cos(w), 1.0 - alpha * a])
    den = np.array([1.0 + alpha / a, -2.0 * np.cos(w), 1.0 - alpha / a])
    return b / den[0], den / den[0]


def apply_channel(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random recording channel: band limits, peaking EQ, tilt and sometimes a small room."""
    from scipy import signal  # imported here: scipy.signal takes a second to load, --help should not
    nyq = sr / 2.0
    sections = [signal.butter(2, min(rng.uniform(50.0, 250.0), 0.2 * nyq) / nyq, "highpass", output="sos")]
    if rng.random() < LOWPASS_PROB:  # band-limited device
        sections.append(signal.butter(4, min(rng.uniform(*LOWPASS_HZ), 0.9 * nyq) / nyq, "lowpass",
                                      output="sos"))
    for _ in range(3):
        f = float(np.exp(rng.uniform(np.log(150.0), np.log(min(6000.0, 0.8 * nyq)))))
        b, a = _peaking(f, rng.normal(0.0, EQ_STD_DB), rng.uniform(0.5, 2.0), sr)
        sections.append(np.concatenate([b, a])[None, :])
    tilt = rng.uniform(-CHANNEL_TILT, CHANNEL_TILT)
    sections.append(np.array([[1.0, tilt, 0.0, 1.0, 0.0, 0.0]]))
    x = signal.sosfilt(np.concatenate(sections), x)   # one pass through all sections
    if rng.random() < 0.4:  # small room: exponentially decaying noise tail
        rt60 = rng.uniform(0.1, 0.4)
        n_ir = int(rt60 * sr)
        ir = rng.standard_normal(n_ir) * np.exp(-6.9 * np.arange(n_ir) / n_ir)
        ir *= rng.uniform(0.05, 0.25) / np.sqrt(np.sum(ir ** 2))
        ir[0] = 1.0
        x = signal.fftconvolve(x, ir)[:len(x)]
    return x


def background_noise(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS coloured noise (white to brownish), sometimes with mains hum."""
    from scipy import signal
    noise = signal.lfilter([1.0], [1.0, -rng.uniform(0.0, 0.97)], rng.standard_normal(n))
    noise /= np.sqrt(np.mean(noise ** 2)) + 1e-12
    if rng.random() < 0.2:
        t = np.arange(n) / sr
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3))
        noise += rng.uniform(0.3, 1.0) * hum
        noise /= np.sqrt(np.mean(noise ** 2)) + 1e-12
    return noise


def utterance_length(settings: Settings, rng: np.random.Generator) -> int:
    """Sample count drawn uniformly in [min, max] duration, kept inside the bounds."""
    sr = settings.sample_rate
    lo = int(np.ceil(settings.min_duration * sr))
    hi = max(lo, int(np.floor(settings.max_duration * sr)))
    return int(np.clip(round(rng.uniform(settings.min_duration, settings.max_duration) * sr), lo, hi))


def synthesize_utterance(settings: Settings, spk_num: int, utt_num: int, voice: Voice) -> np.ndarray:
    """One utterance as int16 samples, a pure function of (settings, speaker, utterance)."""
    sr = settings.sample_rate
    rng = np.random.default_rng([settings.seed, _UTT_STREAM, spk_num, utt_num])
    n = utterance_length(settings, rng)
    lead = int(min(rng.uniform(0.08, 0.3) * sr, 0.15 * n))
    trail = int(min(rng.uniform(0.08, 0.3) * sr, 0.15 * n))
    n_speech = max(1, n - lead - trail)
    rate = voice.rate * rng.uniform(0.9, 1.1)
    tab = build_segments(voice, sr, n_speech, rate, rng)
    speech = np.zeros(n)
    speech[lead:lead + n_speech] = synthesize_speech(tab, voice, sr, rng)
    # Short fades so the cut-off last segment does not click.
    fade = min(n_speech // 4, int(0.02 * sr))
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        speech[lead:lead + fade] *= ramp
        speech[lead + n_speech - fade:lead + n_speech] *= ramp[::-1]
    speech = apply_channel(speech, sr, rng)
    active = np.sqrt(np.mean(speech[lead:lead + n_speech] ** 2)) + 1e-12
    snr_db = rng.uniform(20.0, 40.0)
    x = speech + background_noise(n, sr, rng) * active * 10.0 ** (-snr_db / 20.0)
    level_db = rng.uniform(-32.0, -16.0)  # active-speech RMS in dBFS: loudness says nothing
    x *= 10.0 ** (level_db / 20.0) / active
    peak = np.abs(x).max()
    if peak > 0.98:
        x *= 0.98 / peak
    return np.round(x * 32767.0).astype(np.int16)


# ----------------------------------------------------------------------------------------------
# Corpus assembly
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    settings: Settings
    spk_num: int
    utt_num: int
    path: str


def _run_job(job: _Job) -> int:
    """Synthesise and write one WAV; returns its sample count."""
    voice = draw_voice(job.settings.seed, job.spk_num)
    samples = synthesize_utterance(job.settings, job.spk_num, job.utt_num, voice)
    sf.write(job.path, samples, job.settings.sample_rate, subtype="PCM_16", format="WAV")
    return len(samples)


def make_trials(utts: list[str], utt2spk: dict[str, str], num_trials: int, seed: int) -> list[str]:
    """Balanced Kaldi trial lines, no self-trials, no pair twice (in either order), shuffled."""
    rng = np.random.default_rng([seed, _TRIAL_STREAM])
    by_spk: dict[str, list[int]] = {}
    for i, u in enumerate(utts):
        by_spk.setdefault(utt2spk[u], []).append(i)
    target = [(a, b) for idx in by_spk.values() for ai, a in enumerate(idx) for b in idx[ai + 1:]]
    n_pairs = len(utts) * (len(utts) - 1) // 2
    n_nontarget_total = n_pairs - len(target)
    n_each = min(len(target), n_nontarget_total)
    if num_trials > 0:
        n_each = min(n_each, num_trials // 2)
    if n_each == 0:
        return []
    chosen_t = [target[i] for i in np.sort(rng.choice(len(target), n_each, replace=False))]
    spk_of = np.array([utt2spk[u] for u in utts])
    nontarget: set[tuple[int, int]] = set()
    if n_each * 2 > n_nontarget_total:
        # Dense request: enumerate every cross-speaker pair and draw from the list.
        allpairs = [(a, b) for a in range(len(utts)) for b in range(a + 1, len(utts)) if spk_of[a] != spk_of[b]]
        chosen_n = [allpairs[i] for i in np.sort(rng.choice(len(allpairs), n_each, replace=False))]
    else:
        # Sparse request: rejection sampling avoids enumerating (possibly millions of) pairs.
        chosen_n = []
        while len(chosen_n) < n_each:
            a, b = rng.integers(len(utts), size=(2, 4 * n_each))
            for x, y in zip(a.tolist(), b.tolist()):
                pair = (min(x, y), max(x, y))
                if spk_of[x] != spk_of[y] and pair not in nontarget:
                    nontarget.add(pair)
                    chosen_n.append(pair)
                    if len(chosen_n) == n_each:
                        break
    lines = [(a, b, "target") for a, b in chosen_t] + [(a, b, "nontarget") for a, b in chosen_n]
    swap = rng.random(len(lines)) < 0.5
    order = rng.permutation(len(lines))
    out = []
    for i in order:
        a, b, label = lines[i]
        if swap[i]:
            a, b = b, a
        out.append(f"{utts[a]} {utts[b]} {label}\n")
    return out


def _write_data_dir(path: Path, utts: list[str], utt2spk: dict[str, str], wav: dict[str, str],
                    dur: dict[str, float], trials: list[str] | None) -> None:
    spk2utt: dict[str, list[str]] = {}
    for u in utts:
        spk2utt.setdefault(utt2spk[u], []).append(u)
    with atomic_dir(path) as tmp:
        (tmp / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in utts))
        (tmp / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in utts))
        (tmp / "spk2utt").write_text("".join(f"{s} {' '.join(spk2utt[s])}\n" for s in sorted(spk2utt)))
        (tmp / "utt2dur").write_text("".join(f"{u} {dur[u]:.3f}\n" for u in utts))
        if trials is not None:
            (tmp / "trials").write_text("".join(trials))


def make_corpus(audio_dir: Path, data_dir: Path, num_train_speakers: int, num_test_speakers: int,
                utts_per_speaker: int, settings: Settings, num_trials: int, jobs: int) -> dict[str, float]:
    """Write the corpus; returns summary numbers."""
    n_spk = num_train_speakers + num_test_speakers
    spk_width = max(3, len(str(n_spk)))
    utt_width = max(4, len(str(utts_per_speaker)))
    spks = [f"spk{i:0{spk_width}d}" for i in range(1, n_spk + 1)]
    audio_final = audio_dir.resolve()
    click.echo(f"synthesising {n_spk * utts_per_speaker} utterances of {n_spk} speakers into {audio_dir} "
               f"({jobs} job{'s' if jobs > 1 else ''})", err=True)
    utt_ids: dict[str, list[str]] = {}
    jobs_list: list[tuple[str, str, _Job]] = []
    with atomic_dir(audio_final) as tmp_audio:
        for spk_num, spk in enumerate(spks, start=1):
            (tmp_audio / spk).mkdir()
            utt_ids[spk] = []
            for utt_num in range(1, utts_per_speaker + 1):
                utt = f"{spk}-u{utt_num:0{utt_width}d}"
                utt_ids[spk].append(utt)
                jobs_list.append((utt, spk, _Job(settings, spk_num, utt_num, str(tmp_audio / spk / f"{utt}.wav"))))
        todo = [j for _, _, j in jobs_list]
        if jobs > 1:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                lengths = list(pool.map(_run_job, todo, chunksize=4))
        else:
            lengths = [_run_job(j) for j in todo]
    sr = settings.sample_rate
    dur = {utt: n / sr for (utt, _, _), n in zip(jobs_list, lengths)}
    wav = {utt: str(audio_final / spk / f"{utt}.wav") for utt, spk, _ in jobs_list}
    utt2spk = {utt: spk for utt, spk, _ in jobs_list}
    train_spk, test_spk = spks[:num_train_speakers], spks[num_train_speakers:]
    train_utts = sorted(u for s in train_spk for u in utt_ids[s])
    test_utts = sorted(u for s in test_spk for u in utt_ids[s])
    trials = make_trials(test_utts, utt2spk, num_trials, settings.seed)
    _write_data_dir(data_dir / "train", train_utts, utt2spk, wav, dur, None)
    _write_data_dir(data_dir / "test", test_utts, utt2spk, wav, dur, trials)
    return {
        "train_speakers": len(train_spk), "test_speakers": len(test_spk),
        "train_utts": len(train_utts), "test_utts": len(test_utts),
        "train_hours": sum(dur[u] for u in train_utts) / 3600.0,
        "test_hours": sum(dur[u] for u in test_utts) / 3600.0,
        "trials": len(trials), "target_trials": sum(t.endswith(" target\n") for t in trials),
    }


def _check(audio_dir: Path, data_dir: Path, num_train_speakers: int, num_test_speakers: int,
           utts_per_speaker: int, min_duration: float, max_duration: float, sample_rate: int,
           num_trials: int) -> None:
    if num_train_speakers < 1 or num_test_speakers < 2:
        raise ConfigError("need at least 1 train speaker and 2 test speakers (nontarget trials need two)")
    if utts_per_speaker < 2:
        raise ConfigError("--utts-per-speaker must be at least 2 (target trials need two)")
    if not 0.2 <= min_duration <= max_duration:
        raise ConfigError(f"need 0.2 <= --min-duration <= --max-duration, got {min_duration} and {max_duration}")
    if sample_rate < 8000:
        raise ConfigError(f"--sample-rate must be at least 8000, got {sample_rate}")
    if num_trials == 1:
        raise ConfigError("--num-trials must be 0 (as many as possible) or at least 2 (balanced)")
    audio = audio_dir.resolve()
    for part in ("train", "test"):
        d = (data_dir / part).resolve()
        if audio == d or d in audio.parents:
            raise ConfigError(f"--audio-dir {audio_dir} lies inside {data_dir / part}, which is replaced "
                              "as a whole; choose another place")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--audio-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the WAVs go (AUDIO/<spk>/<utt>.wav); replaced atomically.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the Kaldi data dirs go (DATA/train, DATA/test with trials).")
@click.option("--num-train-speakers", default=40, show_default=True, type=int, help="Training speakers.")
@click.option("--num-test-speakers", default=20, show_default=True, type=int,
              help="Test speakers (disjoint from training; numbered after them).")
@click.option("--utts-per-speaker", default=16, show_default=True, type=int, help="Utterances per speaker.")
@click.option("--min-duration", default=1.0, show_default=True, type=float, help="Shortest utterance, seconds.")
@click.option("--max-duration", default=6.0, show_default=True, type=float, help="Longest utterance, seconds.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed for voices, utterances and trials.")
@click.option("--sample-rate", default=16000, show_default=True, type=int, help="Sample rate in Hz.")
@click.option("--num-trials", default=2000, show_default=True, type=click.IntRange(min=0),
              help="Trial lines, half target and half nontarget; capped by the distinct target pairs "
                   "available; 0 = as many as balance allows.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Parallel processes (the output does not depend on it).")
def main(audio_dir: Path, data_dir: Path, num_train_speakers: int, num_test_speakers: int,
         utts_per_speaker: int, min_duration: float, max_duration: float, seed: int, sample_rate: int,
         num_trials: int, jobs: int) -> None:
    """Generate the synthetic multi-speaker mini corpus (the recipes' embedded default corpus).

    Writes AUDIO/<spk>/<utt>.wav (mono 16-bit PCM) and the Kaldi data dirs DATA/train and DATA/test
    (wav.scp with absolute paths, utt2spk, spk2utt, utt2dur; DATA/test/trials). Speakers are
    spk001.. (test speakers numbered after the training ones), utterances <spk>-u0001.. The same
    options give byte-identical files whatever --jobs is.
    """
    _check(audio_dir, data_dir, num_train_speakers, num_test_speakers, utts_per_speaker, min_duration,
           max_duration, sample_rate, num_trials)
    settings = Settings(seed=seed, sample_rate=sample_rate, min_duration=min_duration, max_duration=max_duration)
    s = make_corpus(audio_dir, data_dir, num_train_speakers, num_test_speakers, utts_per_speaker,
                    settings, num_trials, jobs)
    click.echo(f"speakers: {s['train_speakers']} train + {s['test_speakers']} test; "
               f"utterances: {s['train_utts']} train + {s['test_utts']} test; "
               f"hours: {s['train_hours']:.3f} train + {s['test_hours']:.3f} test; "
               f"trials: {s['trials']} ({s['target_trials']} target, {s['trials'] - s['target_trials']} nontarget) "
               f"-> {audio_dir} and {data_dir}/{{train,test}}")


if __name__ == "__main__":
    from pyspeaker.cli import run_script

    run_script(main)
