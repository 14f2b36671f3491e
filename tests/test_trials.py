"""Trial lists: Kaldi and VoxCeleb formats, unlabeled pairs, errors with line numbers, writing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyspeaker.data import Trials, read_trials, write_trials
from pyspeaker.errors import DataError


def write(tmp_path: Path, text: str, name: str = "trials") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_kaldi_trials(tmp_path: Path):
    path = write(tmp_path, "spk1-a spk1-b target\nspk1-a spk2-a nontarget\n1 0 target\n")
    trials = read_trials(path)
    assert trials.enroll == ["spk1-a", "spk1-a", "1"]
    assert trials.test == ["spk1-b", "spk2-a", "0"]
    assert trials.labels.dtype == bool and trials.labels.tolist() == [True, False, True]
    assert trials.path == str(path) and len(trials) == 3


def test_voxceleb_trials(tmp_path: Path):
    path = write(tmp_path, "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
                           "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n", "veri_test2.txt")
    trials = read_trials(path)
    assert trials.enroll == ["id10270/x6uYqmx31kE/00001.wav"] * 2
    assert trials.test == ["id10270/8jEAjG6SegY/00008.wav", "id10300/ize_eiCFEg0/00003.wav"]
    assert trials.labels.tolist() == [True, False]


def test_unlabeled_pairs(tmp_path: Path):
    trials = read_trials(write(tmp_path, "a b\nc d"))  # no final newline
    assert (trials.enroll, trials.test, trials.labels) == (["a", "c"], ["b", "d"], None)


@pytest.mark.parametrize("text, line, message", [
    ("a b target\na b c d\n", 2, "expected 3 fields like line 1 (kaldi trials), got 4: 'a b c d'"),
    ("a b target\n\n", 2, "empty line"),
    ("a b target\na c nontarget\na d Target\n", 3,
     "unknown label 'Target' (expected target or nontarget): 'a d Target'"),
    ("1 x.wav y.wav\n2 x.wav z.wav\n", 2, "unknown label '2' (expected 1 or 0): '2 x.wav z.wav'"),
    ("a b target\na\u00a0c d target\n", 2,
     "expected 3 fields like line 1 (kaldi trials), got 4 (non-ASCII whitespace?): 'a\\xa0c d target'"),
    ("a b c\n", 1, "unknown trials format 'a b c': expected '<enroll> <test> target|nontarget', "
                   "'<1|0> <path1> <path2>' or '<enroll> <test>'"),
])
def test_errors_name_line_and_text(tmp_path: Path, text: str, line: int, message: str):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as e:
        read_trials(path)
    assert (e.value.path, e.value.line, e.value.message) == (str(path), line, message)


def test_empty_and_missing(tmp_path: Path):
    with pytest.raises(DataError, match="trials file is empty"):
        read_trials(write(tmp_path, ""))
    with pytest.raises(DataError, match="trials file not found"):
        read_trials(tmp_path / "nope")


def test_write_round_trip(tmp_path: Path):
    trials = Trials(["a", "a"], ["b", "c"], np.array([True, False]))
    write_trials(tmp_path / "out", trials)
    assert (tmp_path / "out").read_text() == "a b target\na c nontarget\n"
    back = read_trials(tmp_path / "out")
    assert (back.enroll, back.test, back.labels.tolist()) == (["a", "a"], ["b", "c"], [True, False])
    write_trials(tmp_path / "pairs", Trials(["a"], ["b"], None))
    assert (tmp_path / "pairs").read_text() == "a b\n"


def test_large_list(tmp_path: Path):
    n = 200_000
    labels = np.arange(n) % 3 == 0
    path = tmp_path / "big"
    path.write_text("".join(f"{int(y)} e{i % 1000} t{i}\n" for i, y in enumerate(labels)))
    trials = read_trials(path)
    assert len(trials) == n and trials.enroll[5] == "e5" and trials.test[-1] == f"t{n - 1}"
    np.testing.assert_array_equal(trials.labels, labels)
