"""Audio loading for wav.scp entries: plain files, Kaldi ``cmd |`` pipes and ``file.ark:offset``.

Samples come back as float32 mono in [-1, 1] with their sample rate. Every failure is a DataError
that names the wav.scp file and line when the caller gives them (``path_for_errors``, ``line``).
Segments are cut as Kaldi's ``extract-segments`` does: sample index = int(time * rate), end -1 =
to the end of the recording, and an end up to 0.5 s past the recording is clipped.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from pyspeaker.errors import DataError, require_finite
from pyspeaker.log import get_logger

if TYPE_CHECKING:
    from pyspeaker.data.kaldi_dir import DataDir

log = get_logger(__name__)

MAX_OVERSHOOT = 0.5  # seconds a segment may end past its recording (Kaldi's --max-overshoot)
_ARK_ENTRY = re.compile(r".+:\d+")
_STDERR_TAIL = 400  # characters of a failed command's stderr kept in the message


def segment_problem(start: float, end: float, duration: float) -> str | None:
    """What is wrong with a segment [start, end) of a recording of ``duration`` s, or None."""
    if start < 0:
        return f"segment start {start:g} s is negative"
    if end != -1 and end <= start:
        return f"segment start {start:g} s >= end {end:g} s"
    if start >= duration:
        return f"segment starts at {start:g} s, after the end of its recording ({duration:.3f} s)"
    if end != -1 and end > duration + MAX_OVERSHOOT:
        return f"segment ends at {end:g} s, after the end of its recording ({duration:.3f} s)"
    return None


def cut_segment(samples: np.ndarray, rate: int, start: float, end: float | None, *,
                path_for_errors: str | os.PathLike | None = None, line: int | None = None) -> np.ndarray:
    """Samples of [start, end) seconds (end None or -1: to the end); a copy, not a view."""
    end = -1 if end is None else end
    message = segment_problem(start, end, len(samples) / rate)
    if message:
        raise DataError(message, path=path_for_errors, line=line)
    begin = int(start * rate)
    stop = len(samples) if end == -1 else min(len(samples), int(end * rate))
    return samples[begin:stop].copy()


def _run_pipe(command: str, path: str | os.PathLike | None, line: int | None) -> bytes:
    # pipefail: a failing first stage ("sox missing.wav ... | ...") must not pass as empty audio.
    proc = subprocess.run(["bash", "-c", "set -o pipefail; " + command], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:].replace("\n", " / ")
        raise DataError(f"command {command!r} failed with exit code {proc.returncode}"
                        + (f": {tail}" if tail else ""), path=path, line=line)
    return proc.stdout


def _fix_streamed_wav(data: bytes) -> bytes:
    """A WAV written to a pipe cannot seek back to fill in its sizes: some writers (sox, ffmpeg
    with some options) leave the data chunk size 0, which libsndfile reads as no audio. Such a
    size is set to the bytes that follow; other input is returned unchanged."""
    import struct

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"data":
            available = len(data) - pos - 8
            if size != 0 or available == 0:
                return data
            fixed = bytearray(data)
            struct.pack_into("<I", fixed, pos + 4, available)
            struct.pack_into("<I", fixed, 4, len(data) - 8)
            return bytes(fixed)
        pos += 8 + size + (size & 1)
    return data


def _int_to_float(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:  # 8-bit PCM is unsigned
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    return array.astype(np.float32)


def _read_ark(entry: str, path: str | os.PathLike | None, line: int | None) -> tuple[np.ndarray, int]:
    import kaldiio

    try:
        loaded = kaldiio.load_mat(entry)
    except Exception as e:  # kaldiio raises many kinds for a bad offset or a foreign file
        raise DataError(f"cannot read ark entry {entry!r}: {type(e).__name__}: {e}", path=path, line=line) from None
    if not isinstance(loaded, tuple):
        raise DataError(f"ark entry {entry!r} is a matrix, not audio", path=path, line=line)
    rate, array = loaded
    array = _int_to_float(np.asarray(array))
    return (array if array.ndim == 2 else array[:, None]), int(rate)


def _read_soundfile(source: str | io.BytesIO, entry: str, path: str | os.PathLike | None,
                    line: int | None) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, EOFError) as e:  # LibsndfileError is a RuntimeError
        reason = getattr(e, "error_string", str(e))
        # libsndfile says this when its last guess (MP3) rejects the bytes; the file does exist.
        if "does not exist" in reason:
            reason = "Format not recognised."
        raise DataError(f"cannot decode audio from {entry!r}: {reason}", path=path, line=line) from None
    return samples, rate


def _decode(entry: str, path: str | os.PathLike | None, line: int | None) -> tuple[np.ndarray, int]:
    """(frames x channels float32, rate) for a wav.scp entry."""
    if entry.endswith("|"):
        return _read_soundfile(io.BytesIO(_fix_streamed_wav(_run_pipe(entry[:-1].strip(), path, line))),
                               entry, path, line)
    if _ARK_ENTRY.fullmatch(entry) and not os.path.exists(entry):
        return _read_ark(entry, path, line)
    if not os.path.isfile(entry):
        raise DataError(f"audio file not found: {entry}", path=path, line=line)
    return _read_soundfile(entry, entry, path, line)


def _first_channel(frames: np.ndarray, entry: str, path: str | os.PathLike | None, line: int | None) -> np.ndarray:
    """The first channel (with a warning if there are more), refusing empty or non-finite audio."""
    if frames.shape[1] > 1:
        where = "" if path is None else f"{path}:{line}: "
        log.warning("%s%r has %d channels; using the first one (channel 0), as Kaldi does",
                    where, entry, frames.shape[1])
    samples = np.ascontiguousarray(frames[:, 0])
    if len(samples) == 0:
        raise DataError(f"no audio in {entry!r} (0 samples)", path=path, line=line)
    # Float WAVs can hold NaN / inf samples, which would turn every feature of the file into NaN.
    require_finite(samples, f"samples of audio {entry!r}", path, line=line)
    return samples


def load_audio(entry: str, *, path_for_errors: str | os.PathLike | None = None, line: int | None = None,
               expected_sample_rate: int | None = None, start: float = 0.0,
               end: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a wav.scp entry to (float32 mono samples, sample rate).

    ``entry`` is a path, a Kaldi pipe ``cmd ... |`` (run with bash, WAV read from its stdout) or an
    extended filename ``file.ark:offset``. Multi-channel audio: the first channel is used (as
    Kaldi does), with a warning. ``start``/``end`` (seconds) cut a segment.
    """
    entry = entry.strip()
    frames, rate = _decode(entry, path_for_errors, line)
    samples = _first_channel(frames, entry, path_for_errors, line)
    if expected_sample_rate is not None and rate != expected_sample_rate:
        raise DataError(f"sample rate {rate} Hz, expected {expected_sample_rate} Hz: {entry!r}",
                        path=path_for_errors, line=line)
    if start != 0.0 or end not in (None, -1):
        samples = cut_segment(samples, rate, start, end, path_for_errors=path_for_errors, line=line)
    return samples, rate


def read_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(float32 mono samples, sample rate) of an audio file named directly (a trial list's entry,
    say), never run as a pipe or read as an ark entry; errors name the file.

    For PCM and float files the samples are those of voxceleb_trainer's reading (``soundfile.read``
    as float64, then float32): soundfile's float32 conversion rounds the same values. More
    channels: the first, with a warning.
    """
    if not os.path.isfile(path):
        raise DataError("audio file not found", path=path)
    entry = os.fspath(path)
    frames, rate = _read_soundfile(entry, entry, None, None)
    return _first_channel(frames, entry, None, None), int(rate)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 samples at ``rate`` Hz resampled to ``target`` Hz (torchaudio's windowed-sinc
    resampler, the one place pyspeaker changes a sample rate)."""
    import math

    import torch
    import torchaudio.functional as AF

    if int(rate) == int(target):
        return x
    g = math.gcd(int(rate), int(target))
    with torch.no_grad():
        return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(rate) // g,
                           int(target) // g).numpy()


def read_random_span(entry: str, length: int, rng: np.random.Generator, sample_rate: int, *,
                     path_for_errors: str | os.PathLike | None = None, line: int | None = None,
                     start: float = 0.0, end: float | None = None, resample_from_any: bool = False) -> np.ndarray:
    """``length`` float32 samples from a random point of a wav.scp entry (or of its segment
    ``start``-``end``), wrapped around when it is shorter, as voxceleb_trainer pads short files.

    A plain file is read by seeking to the span, not decoded whole (training crops, noise clips).
    Audio at another rate than ``sample_rate`` is an error, or with ``resample_from_any`` the span
    is read at the file's rate and resampled (a model's training audio at another rate).
    """
    import soundfile

    where = {"path": entry if path_for_errors is None else path_for_errors, "line": line}
    if start == 0.0 and end in (None, -1) and os.path.isfile(entry):
        try:
            with soundfile.SoundFile(entry) as f:
                if f.samplerate != sample_rate:
                    if not resample_from_any:
                        raise DataError(f"sample rate {f.samplerate} Hz, expected {sample_rate} Hz: {entry}", **where)
                    # the span at the file's rate with 16 samples of context on each side, so that
                    # the resampling filter's edges fall outside the crop
                    pad = 16
                    span = -(-length * f.samplerate // sample_rate) + 2 * pad + 1
                    x = read_random_span(entry, span, rng, f.samplerate, path_for_errors=path_for_errors, line=line)
                    y = resample(x, f.samplerate, sample_rate)[pad * sample_rate // f.samplerate:]
                    return np.ascontiguousarray(np.resize(y, length), dtype=np.float32)
                total = f.frames
                if total > length:
                    f.seek(int(rng.integers(0, total - length + 1)))
                    x = f.read(length, dtype="float32", always_2d=True)[:, 0]
                else:
                    x = f.read(dtype="float32", always_2d=True)[:, 0]
        except RuntimeError as err:  # libsndfile
            raise DataError(f"cannot decode audio from {entry!r}: {err}", **where) from None
    else:
        x, rate = load_audio(entry, path_for_errors=path_for_errors, line=line,
                             expected_sample_rate=None if resample_from_any else sample_rate, start=start, end=end)
        x = resample(x, rate, sample_rate)
        if len(x) > length:
            first = int(rng.integers(0, len(x) - length + 1))
            x = x[first:first + length]
    if len(x) == 0:
        raise DataError(f"no audio in {entry!r} (0 samples)", **where)
    require_finite(x, f"samples of audio {entry!r}", **where)
    if len(x) < length:
        x = np.resize(x, length)
    return np.ascontiguousarray(x, dtype=np.float32)


def iter_data_dir_audio(datadir: "DataDir", utts: Iterable[str] | None = None,
                        expected_sample_rate: int | None = None) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yield (utt, samples, rate) in sorted utterance order, cutting ``segments`` when present.

    A recording is decoded once for its consecutive segments. Audio errors name the wav.scp line,
    bad segment ranges the segments line.
    """
    wav_path, seg_path = datadir.file("wav.scp"), datadir.file("segments")
    chosen = datadir.utts if utts is None else sorted(utts)
    current: tuple[str | None, np.ndarray | None, int] = (None, None, 0)
    for utt in chosen:
        if utt not in datadir.utt2spk:
            raise DataError(f"utterance {utt!r} is not in the data dir", path=datadir.file("utt2spk"))
        if datadir.segments is None:
            rec, segment = utt, None
        elif utt in datadir.segments:
            segment = datadir.segments[utt]
            rec = segment[0]
        else:
            raise DataError(f"utterance {utt!r} has no audio: it is not in segments", path=seg_path)
        if rec != current[0]:
            if rec not in datadir.wav_scp:
                missing_from = wav_path if segment is None else seg_path
                raise DataError(f"no wav.scp entry for recording {rec!r}", path=missing_from,
                                line=datadir.line_of("segments", utt) if segment else None)
            samples, rate = load_audio(datadir.wav_scp[rec], path_for_errors=wav_path,
                                       line=datadir.line_of("wav.scp", rec),
                                       expected_sample_rate=expected_sample_rate)
            current = (rec, samples, rate)
        _, samples, rate = current
        if segment is None:
            yield utt, samples, rate
        else:
            yield utt, cut_segment(samples, rate, segment[1], segment[2], path_for_errors=seg_path,
                                   line=datadir.line_of("segments", utt)), rate
