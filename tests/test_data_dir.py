"""Kaldi data dirs: reading, validation (library and `pyspeaker validate-data`), writing, splitting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pyspeaker.data import (DataDir, Problem, read_table, read_voxceleb_train_list, split_data_dir,
                            validate_data_dir, write_data_dir)
from pyspeaker.errors import ConfigError, DataError


def make_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal(int(seconds * rate)) * 0.1).astype(np.float32), rate, subtype="PCM_16")
    return path


def write_files(d: Path, **files: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name.replace("_scp", ".scp")).write_text(text)
    return d


def run_validate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyspeaker", "validate-data", *args],
                          capture_output=True, text=True)


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    """Two speakers, three utterances: two WAV files and one `cat ... |` pipe."""
    wavs = [make_wav(tmp_path / f"r{i}.wav") for i in range(3)]
    d = tmp_path / "data"
    write_data_dir(d, {"a-1": str(wavs[0]), "a-2": f"cat {wavs[1]} |", "b-1": str(wavs[2])},
                   {"a-1": "a", "a-2": "a", "b-1": "b"})
    return d


def test_write_data_dir_files_and_load(good_dir: Path, tmp_path: Path):
    assert (good_dir / "utt2spk").read_text() == "a-1 a\na-2 a\nb-1 b\n"
    assert (good_dir / "spk2utt").read_text() == "a a-1 a-2\nb b-1\n"
    assert (good_dir / "wav.scp").read_text().splitlines()[1] == f"a-2 cat {tmp_path}/r1.wav |"
    dd = DataDir.load(good_dir)
    assert dd.utts == ["a-1", "a-2", "b-1"]
    assert dd.speakers == ["a", "b"]
    assert dd.spk2utt == {"a": ["a-1", "a-2"], "b": ["b-1"]}
    assert dd.wav_scp["a-2"] == f"cat {tmp_path}/r1.wav |"
    assert dd.segments is None and dd.utt2dur is None
    assert dd.line_of("wav.scp", "b-1") == 3
    assert validate_data_dir(good_dir) == []


def test_cli_ok(good_dir: Path):
    result = run_validate(str(good_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{good_dir}: OK (3 utterances, 2 speakers)\n"


def test_cli_reports_every_problem_with_file_and_line(tmp_path: Path):
    ok = make_wav(tmp_path / "ok.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(3000))
    d = write_files(
        tmp_path / "bad",
        wav_scp=(f"a-1 {ok}\n"
                 f"a-2 {corrupt}\n"
                 f"b-1 {tmp_path}/missing.wav\n"
                 "b-2 false |\n"
                 f"b-3 {ok}\n"),
        utt2spk="a-1 a\na-2 a\nb-2 b\nb-1 b\nb-3 b\nb-3 b\n",
        spk2utt="a a-1\nb b-1 b-2 b-3\n",
    )
    result = run_validate(str(d))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{d}/spk2utt:1: speaker 'a': utterance 'a-2' of utt2spk (line 2) is missing "
        "(spk2utt must match utt2spk; derive it with utils/utt2spk_to_spk2utt.pl)",
        f"{d}/utt2spk:4: not sorted in C-locale order: 'b-1' comes after 'b-2' (line 3); sort with LC_ALL=C sort",
        f"{d}/utt2spk:6: duplicate id 'b-3' (also on line 5)",
        f"{d}/wav.scp:2: cannot decode audio from '{corrupt}': Format not recognised.",
        f"{d}/wav.scp:3: audio file not found: {tmp_path}/missing.wav",
        f"{d}/wav.scp:4: command 'false' failed with exit code 1",
    ]
    # Without audio only the table problems remain.
    result = run_validate("--no-check-audio", str(d))
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 3


def test_missing_required_files_and_missing_dir(tmp_path: Path):
    d = write_files(tmp_path / "d", utt2spk="")
    assert [p.format() for p in validate_data_dir(d)] == [
        f"{d}/utt2spk: file is empty",
        f"{d}/wav.scp: missing (required file)",
    ]
    result = run_validate(str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr == f"{tmp_path}/nope: data directory does not exist\n"


def test_malformed_lines(tmp_path: Path):
    d = write_files(tmp_path / "d", wav_scp="r1 a.wav\n\nr2\n", utt2spk="r1 a extra\n")
    assert [p.format() for p in validate_data_dir(d, check_audio=False)] == [
        f"{d}/utt2spk:1: expected 2 fields (<utt> <speaker>), got 3: 'r1 a extra'",
        f"{d}/wav.scp:1: recording 'r1' is not in utt2spk",  # as its utt2spk line was unreadable
        f"{d}/wav.scp:2: empty line",
        f"{d}/wav.scp:3: expected at least 2 fields (<recording> <path or command |>), got 1: 'r2'",
    ]
    with pytest.raises(DataError) as e:
        DataDir.load(d, validate=False)  # malformed lines raise even without validation
    assert str(e.value) == f"{d}/utt2spk:1: expected 2 fields (<utt> <speaker>), got 3: 'r1 a extra'"


def test_load_raises_first_problem_unless_not_validating(tmp_path: Path):
    d = write_files(tmp_path / "d", wav_scp="u2 x.wav\nu1 y.wav\n", utt2spk="u2 s\nu1 s\n")
    with pytest.raises(DataError) as e:
        DataDir.load(d)
    assert (e.value.path, e.value.line) == (str(d / "utt2spk"), 2)
    assert e.value.message.startswith("not sorted in C-locale order: 'u1' comes after 'u2'")
    dd = DataDir.load(d, validate=False)
    assert dd.utts == ["u1", "u2"] and dd.spk2utt == {"s": ["u1", "u2"]}


def test_speaker_not_contiguous(tmp_path: Path):
    d = write_files(tmp_path / "d", wav_scp="x1 a.wav\nx2 b.wav\nx3 c.wav\n", utt2spk="x1 s1\nx2 s2\nx3 s1\n")
    assert validate_data_dir(d, check_audio=False) == [Problem(
        str(d / "utt2spk"), 3,
        "utt2spk is not sorted by speaker: utterance 'x3' of speaker 's1' comes after utterances of "
        "speaker 's2' (ids should have the speaker id as prefix)")]


def test_audio_and_utterance_lists_must_match(tmp_path: Path):
    d = write_files(tmp_path / "d", wav_scp="a-1 a.wav\na-3 c.wav\n", utt2spk="a-1 a\na-2 a\n",
                    spk2utt="a a-1 a-2\nb b-1\n")
    assert [p.format() for p in validate_data_dir(d, check_audio=False)] == [
        f"{d}/spk2utt:2: speaker 'b': utterance 'b-1' is not in utt2spk "
        "(spk2utt must match utt2spk; derive it with utils/utt2spk_to_spk2utt.pl)",
        f"{d}/utt2spk:2: utterance 'a-2' has no audio: it is not in wav.scp",
        f"{d}/wav.scp:2: recording 'a-3' is not in utt2spk",
    ]


def test_segments(tmp_path: Path):
    long_wav = make_wav(tmp_path / "long.wav", seconds=3.0)
    d = write_files(tmp_path / "d", wav_scp=f"rec {long_wav}\n",
                    segments="s-1 rec 0 1.5\ns-2 rec 1.5 -1\n", utt2spk="s-1 s\ns-2 s\n",
                    utt2dur="s-1 1.5\ns-2 1.5\n")
    assert validate_data_dir(d) == []
    dd = DataDir.load(d)
    assert dd.segments == {"s-1": ("rec", 0.0, 1.5), "s-2": ("rec", 1.5, -1.0)}
    assert dd.utt2dur == {"s-1": 1.5, "s-2": 1.5}

    write_files(d, segments="s-1 rec 0 4.0\ns-2 rec 2 1\ns-3 other 0 1\n", utt2spk="s-1 s\ns-2 s\ns-3 s\n",
                utt2dur="s-1 1.5\ns-2 x\n")
    assert [p.format() for p in validate_data_dir(d)] == [
        f"{d}/segments:1: segment ends at 4 s, after the end of its recording (3.000 s)",
        f"{d}/segments:2: segment start 2 s >= end 1 s",
        f"{d}/segments:3: recording 'other' of segment 's-3' is not in wav.scp",
        f"{d}/utt2dur: 2 utterance(s) of utt2spk have no duration, the first is 's-2'",
        f"{d}/utt2dur:2: duration 'x' is not a number",
    ]
    result = run_validate("--no-check-audio", str(d))
    assert result.returncode == 1
    assert f"{d}/segments:1:" not in result.stderr  # the length check needs the audio


def test_sample_rate_check(good_dir: Path):
    result = run_validate("--sample-rate", "8000", str(good_dir))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{good_dir}/wav.scp:1: sample rate 16000 Hz, expected 8000 Hz: '{good_dir.parent}/r0.wav'"
    assert run_validate("--sample-rate", "16000", str(good_dir)).returncode == 0


def test_write_data_dir_segments_and_stale_files(tmp_path: Path):
    d = tmp_path / "d"
    write_data_dir(d, {"rec": "x.wav"}, {"u2": "s", "u1": "s"},
                   segments={"u2": ("rec", 1.25, -1), "u1": ("rec", 0, 1.25)}, utt2dur={"u1": 1.25, "u2": 2})
    assert (d / "segments").read_text() == "u1 rec 0 1.25\nu2 rec 1.25 -1\n"
    assert (d / "utt2dur").read_text() == "u1 1.250\nu2 2.000\n"
    write_data_dir(d, {"u1": "x.wav"}, {"u1": "s"})
    assert not (d / "segments").exists() and not (d / "utt2dur").exists()
    with pytest.raises(DataError, match="invalid speaker id 'a b'"):
        write_data_dir(d, {"u1": "x.wav"}, {"u1": "a b"})
    assert (d / "utt2spk").read_text() == "u1 s\n"  # the failed write left the old files


@pytest.mark.parametrize("n, nj, sizes", [(10, 3, [4, 3, 3]), (10, 10, [1] * 10), (7, 1, [7]), (9, 4, [3, 2, 2, 2])])
def test_split_data_dir(n: int, nj: int, sizes: list[int]):
    utts = {f"u{i:02d}": "s" for i in range(n)}
    dd = DataDir(path="d", wav_scp=dict.fromkeys(utts, "x.wav"), utt2spk=utts, spk2utt={"s": sorted(utts)})
    parts = split_data_dir(dd, nj)
    assert [len(p) for p in parts] == sizes
    assert sum(parts, []) == sorted(utts)


def test_split_data_dir_too_many_jobs():
    dd = DataDir(path="d", wav_scp={"u": "x.wav"}, utt2spk={"u": "s"}, spk2utt={"s": ["u"]})
    with pytest.raises(ConfigError, match=r"cannot split 1 utterance\(s\) into 2 jobs"):
        split_data_dir(dd, 2)


def test_read_table_and_voxceleb_list(tmp_path: Path):
    f = tmp_path / "train_list.txt"
    f.write_text("id00012 id00012/21Uxsk56VDQ/00001.wav\nid00015 id00015/0fijmz4vTVU/00001.wav\n")
    assert read_voxceleb_train_list(f) == [("id00012", "id00012/21Uxsk56VDQ/00001.wav"),
                                           ("id00015", "id00015/0fijmz4vTVU/00001.wav")]
    assert read_table(f, max_fields=None) == [(1, "id00012", ["id00012/21Uxsk56VDQ/00001.wav"]),
                                              (2, "id00015", ["id00015/0fijmz4vTVU/00001.wav"])]
    f.write_text("r1  sox  a.wav -t wav -  |\n")
    assert read_table(f, max_fields=None, rest_of_line=True) == [(1, "r1", "sox  a.wav -t wav -  |")]
    f.write_text("id00012 a.wav\nid00013\n")
    with pytest.raises(DataError) as e:
        read_voxceleb_train_list(f)
    assert str(e.value) == f"{f}:2: expected 2 fields (<speaker> <path>), got 1: 'id00013'"
    f.write_bytes(b"a b\nc \xff\n")
    with pytest.raises(DataError, match=r":2: not UTF-8 text \(byte 6\)"):
        read_table(f)
