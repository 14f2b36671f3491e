"""Audio loading: WAV files, Kaldi pipes, ark entries, segments, and the errors for bad audio."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from pyspeaker.audio import iter_data_dir_audio, load_audio
from pyspeaker.data import DataDir, write_data_dir
from pyspeaker.errors import DataError


def pcm16(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


def write_pcm(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def test_plain_wav_is_float32_in_unit_range(tmp_path: Path):
    x = pcm16(1600)
    samples, rate = load_audio(str(write_pcm(tmp_path / "a.wav", x)))
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == (1600,)
    np.testing.assert_array_equal(samples, x / 32768.0)


def test_pipe_entries(tmp_path: Path):
    x = pcm16(800)
    wav = write_pcm(tmp_path / "a.wav", x, rate=8000)
    samples, rate = load_audio(f"cat {wav} |")
    assert rate == 8000
    np.testing.assert_array_equal(samples, x / 32768.0)
    # A command that writes WAV bytes to a pipe (no seekable output) from python instead of sox.
    script = tmp_path / "gen.py"
    script.write_text("import io, sys, numpy as np, soundfile as sf\n"
                      "buf = io.BytesIO(); sf.write(buf, np.full(400, 0.5), 16000, format='WAV', subtype='PCM_16')\n"
                      "sys.stdout.buffer.write(buf.getvalue())\n")
    samples, rate = load_audio(f"{sys.executable} {script} |")
    assert rate == 16000 and len(samples) == 400
    np.testing.assert_allclose(samples, 0.5)


def test_streamed_wav_with_unset_sizes_is_read_whole(tmp_path: Path):
    """sox -t wav - and similar writers cannot seek back on a pipe: their header says 0 data bytes."""
    import struct

    x = pcm16(1000)
    data = bytearray(write_pcm(tmp_path / "a.wav", x, rate=8000).read_bytes())
    at = data.find(b"data")
    struct.pack_into("<I", data, at + 4, 0)
    struct.pack_into("<I", data, 4, 0)
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    assert len(sf.read(tmp_path / "streamed.wav")[0]) == 0  # what libsndfile alone makes of it
    samples, rate = load_audio(f"cat {tmp_path / 'streamed.wav'} |")
    assert rate == 8000
    np.testing.assert_array_equal(samples, x / 32768.0)


def test_failing_pipes_name_the_wav_scp_line(tmp_path: Path):
    with pytest.raises(DataError) as e:
        load_audio("false |", path_for_errors="data/wav.scp", line=7)
    assert str(e.value) == "data/wav.scp:7: command 'false' failed with exit code 1"
    with pytest.raises(DataError) as e:
        load_audio("echo first >&2; echo 'sox FAIL: no such file' >&2; exit 3 |")
    assert str(e.value) == ("command \"echo first >&2; echo 'sox FAIL: no such file' >&2; exit 3\" failed with "
                            "exit code 3: first / sox FAIL: no such file")
    # pipefail: the failing first stage of a pipeline is not hidden by `cat`.
    with pytest.raises(DataError, match="failed with exit code 1: cat: .*missing.wav: No such file"):
        load_audio(f"cat {tmp_path}/missing.wav | cat |")
    with pytest.raises(DataError, match="cannot decode audio from 'true |': Format not recognised"):
        load_audio("true |")


def test_ark_entry(tmp_path: Path):
    x = pcm16(1000)
    kaldiio.save_ark(str(tmp_path / "wav.ark"), {"u1": (8000, x), "u2": (16000, x[:10])},
                     scp=str(tmp_path / "wav.scp"))
    entries = dict(line.split() for line in (tmp_path / "wav.scp").read_text().splitlines())
    samples, rate = load_audio(entries["u1"])
    assert rate == 8000 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, x / 32768.0)
    assert load_audio(entries["u2"])[0].shape == (10,)
    kaldiio.save_ark(str(tmp_path / "feats.ark"), {"u1": np.zeros((3, 4), np.float32)})
    with pytest.raises(DataError, match=r"ark entry '.*feats.ark:3' is a matrix, not audio"):
        load_audio(f"{tmp_path}/feats.ark:3")
    with pytest.raises(DataError, match=r"cannot read ark entry '.*nope.ark:3': FileNotFoundError"):
        load_audio(f"{tmp_path}/nope.ark:3")


@pytest.mark.parametrize("seed", [0, 1])  # seed 1 is rejected by libsndfile's MP3 guess
def test_bad_audio_errors(tmp_path: Path, seed: int):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(seed).bytes(3000))
    with pytest.raises(DataError) as e:
        load_audio(str(corrupt), path_for_errors="d/wav.scp", line=2)
    assert str(e.value) == f"d/wav.scp:2: cannot decode audio from '{corrupt}': Format not recognised."
    with pytest.raises(DataError) as e:
        load_audio(str(tmp_path / "missing.wav"), path_for_errors="d/wav.scp", line=3)
    assert str(e.value) == f"d/wav.scp:3: audio file not found: {tmp_path}/missing.wav"


def test_empty_and_wrong_rate(tmp_path: Path):
    empty = write_pcm(tmp_path / "empty.wav", np.zeros(0, np.int16))
    with pytest.raises(DataError) as e:
        load_audio(str(empty), path_for_errors="d/wav.scp", line=1)
    assert str(e.value) == f"d/wav.scp:1: no audio in '{empty}' (0 samples)"
    wav = write_pcm(tmp_path / "a.wav", pcm16(100), rate=8000)
    with pytest.raises(DataError) as e:
        load_audio(str(wav), expected_sample_rate=16000)
    assert str(e.value) == f"sample rate 8000 Hz, expected 16000 Hz: '{wav}'"
    assert load_audio(str(wav), expected_sample_rate=8000)[1] == 8000


def test_stereo_uses_first_channel(tmp_path: Path, caplog):
    left, right = pcm16(300, 1), pcm16(300, 2)
    wav = write_pcm(tmp_path / "st.wav", np.stack([left, right], 1))
    with caplog.at_level(logging.WARNING):
        samples, _ = load_audio(str(wav), path_for_errors="d/wav.scp", line=4)
    np.testing.assert_array_equal(samples, left / 32768.0)
    assert f"d/wav.scp:4: '{wav}' has 2 channels; using the first one (channel 0), as Kaldi does" in caplog.text


def test_start_end(tmp_path: Path):
    x = pcm16(16000)
    wav = str(write_pcm(tmp_path / "a.wav", x))
    samples, _ = load_audio(wav, start=0.25, end=0.5)
    np.testing.assert_array_equal(samples, x[4000:8000] / 32768.0)
    assert len(load_audio(wav, start=0.75)[0]) == 4000
    assert len(load_audio(wav, start=0.75, end=1.2)[0]) == 4000  # Kaldi's 0.5 s overshoot is clipped
    with pytest.raises(DataError, match="segment ends at 1.6 s, after the end of its recording"):
        load_audio(wav, start=0.75, end=1.6)


def test_iter_data_dir_audio_with_segments_loads_each_recording_once(tmp_path: Path):
    x, y = pcm16(16000, 1), pcm16(8000, 2)
    counter = tmp_path / "loads.txt"
    # Each run of the pipe appends a line to the counter, so we see how often a recording is decoded.
    wav_scp = {"recA": f"echo A >> {counter}; cat {write_pcm(tmp_path / 'a.wav', x)} |",
               "recB": f"echo B >> {counter}; cat {write_pcm(tmp_path / 'b.wav', y)} |"}
    segments = {"s1-a": ("recA", 0.0, 0.5), "s1-b": ("recA", 0.5, -1), "s2-a": ("recB", 0.1, 0.2)}
    d = tmp_path / "d"
    write_data_dir(d, wav_scp, {"s1-a": "s1", "s1-b": "s1", "s2-a": "s2"}, segments=segments)
    dd = DataDir.load(d)
    got = list(iter_data_dir_audio(dd))
    assert [u for u, _, _ in got] == ["s1-a", "s1-b", "s2-a"]
    np.testing.assert_array_equal(got[0][1], x[:8000] / 32768.0)
    np.testing.assert_array_equal(got[1][1], x[8000:] / 32768.0)
    np.testing.assert_array_equal(got[2][1], y[1600:3200] / 32768.0)
    assert counter.read_text() == "A\nB\n"
    assert [u for u, _, _ in iter_data_dir_audio(dd, utts=["s2-a", "s1-b"])] == ["s1-b", "s2-a"]


def test_iter_data_dir_audio_errors_name_the_right_file(tmp_path: Path):
    wav = write_pcm(tmp_path / "a.wav", pcm16(16000))
    d = tmp_path / "d"
    write_data_dir(d, {"r1": str(wav), "r2": str(tmp_path / "gone.wav")}, {"u1": "s", "u2": "s", "u3": "s"},
                   segments={"u1": ("r1", 0, 0.5), "u2": ("r1", 0.5, 3.0), "u3": ("r2", 0, 1)})
    dd = DataDir.load(d)
    it = iter_data_dir_audio(dd)
    assert next(it)[0] == "u1"
    with pytest.raises(DataError) as e:
        next(it)
    assert str(e.value) == f"{d}/segments:2: segment ends at 3 s, after the end of its recording (1.000 s)"
    with pytest.raises(DataError) as e:
        list(iter_data_dir_audio(dd, utts=["u3"]))
    assert str(e.value) == f"{d}/wav.scp:2: audio file not found: {tmp_path}/gone.wav"
    with pytest.raises(DataError, match="utterance 'nope' is not in the data dir"):
        list(iter_data_dir_audio(dd, utts=["nope"]))


def test_iter_data_dir_audio_without_segments(tmp_path: Path):
    x = pcm16(500)
    d = tmp_path / "d"
    write_data_dir(d, {"u1": str(write_pcm(tmp_path / "a.wav", x)), "u2": f"cat {tmp_path}/a.wav |"},
                   {"u1": "s", "u2": "s"})
    got = list(iter_data_dir_audio(DataDir.load(d), expected_sample_rate=16000))
    assert [(u, len(s), r) for u, s, r in got] == [("u1", 500, 16000), ("u2", 500, 16000)]
    np.testing.assert_array_equal(got[1][1], x / 32768.0)


def test_random_span_resampled_from_another_rate(tmp_path):
    """Training audio at 8 kHz for a 16 kHz model: the span is read at 8 kHz and resampled, so a
    440 Hz tone stays 440 Hz; without resample_from_any the rate is an error naming the file."""
    from pyspeaker.audio import read_random_span
    from pyspeaker.errors import DataError

    t = np.arange(8000 * 2) / 8000
    path = tmp_path / "tone8k.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    x = read_random_span(str(path), 16000, np.random.default_rng(0), 16000, resample_from_any=True)
    assert x.shape == (16000,) and x.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440) <= 1.0
    assert 0.45 <= np.abs(x).max() <= 0.55
    with pytest.raises(DataError, match="sample rate 8000 Hz, expected 16000 Hz"):
        read_random_span(str(path), 16000, np.random.default_rng(0), 16000)
