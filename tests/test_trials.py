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


def test_trials_from_numpy_arrays_written_in_blocks(tmp_path: Path, monkeypatch):
    from pyspeaker.data import columns

    monkeypatch.setattr(columns, "WRITE_LINES", 3)
    enroll, test = np.array(["a", "b", "a", "c", "b"]), np.array(["b", "c", "c", "a", "a"])
    labels = np.array([1, 0, 0, 1, 0])
    trials = Trials(enroll=enroll, test=test, labels=labels)
    assert (trials.enroll, trials.test, len(trials), trials.pair(3)) == (list(enroll), list(test), 5, "c a")
    write_trials(tmp_path / "t", trials)
    assert (tmp_path / "t").read_text() == "".join(f"{e} {t} {'target' if y else 'nontarget'}\n"
                                                   for e, t, y in zip(enroll, test, labels))
    with pytest.raises(ValueError, match="same length"):
        Trials(["a"], ["b", "c"])


@pytest.mark.parametrize("block", [6, 40, 1 << 20])
def test_any_whitespace_layout_reads_as_single_spaces(tmp_path: Path, block: int):
    """Tabs, repeated, leading and trailing spaces, CRLF and a byte-order mark: the slow path gives
    what the single-space (pyarrow) path gives."""
    rows = [("spk1-a", "spk1-b", "target"), ("spk1-a", "spk2-a", "nontarget"), ("é/ü", "中文", "target")] * 7
    plain = write(tmp_path, "".join(" ".join(r) + "\n" for r in rows), "plain")
    odd = tmp_path / "odd"
    odd.write_bytes(b"\xef\xbb\xbf" + "".join(f"  {e}\t{t}  {y} \r\n" for e, t, y in rows).encode())
    ref = read_trials(plain, block_bytes=block)
    got = read_trials(odd, block_bytes=block)
    assert got.enroll == ref.enroll == [r[0] for r in rows] and got.test == ref.test == [r[1] for r in rows]
    assert got.labels.tolist() == ref.labels.tolist() == [r[2] == "target" for r in rows]


def test_not_utf8_names_the_file_byte_and_line(tmp_path: Path):
    path = tmp_path / "trials"
    path.write_bytes(b"a b target\n" * 5 + b"a \xff target\n")
    for block in (8, 1 << 20):
        with pytest.raises(DataError) as e:
            read_trials(path, block_bytes=block)
        assert (e.value.line, e.value.message) == (6, "not UTF-8 text (byte 57)")


def test_odd_whitespace_is_what_str_split_splits_on():
    from pyspeaker.data import columns

    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    odd = {c for c in spaces if c.encode() not in b" \n" and columns._ODD_UTF8.search(c.encode()) is None}
    assert odd == {c.decode() for c in columns._ODD_BYTES}
    assert all(columns._ODD_UTF8.fullmatch(c.encode()) for c in spaces if ord(c) > 127)
    assert columns._ODD_UTF8.search("é中ü".encode()) is None


def test_vocabulary_codes():
    from pyspeaker.data.columns import Vocabulary

    v = Vocabulary()
    assert v.codes(["abc", "abd"]).tolist() == [-1, -1] and len(v) == 0
    assert v.codes(["abc", "abc", "abd", "x" * 20, "abc"], grow=True).tolist() == [0, 0, 1, 2, 0]
    assert v.codes(["abd", "abc", "zz", "é", "zz"], grow=True).tolist() == [1, 0, 3, 4, 3]
    assert v.codes(["q", "x" * 20, "ab"]).tolist() == [-1, 2, -1]
    assert v.ids() == ["abc", "abd", "x" * 20, "zz", "é"] and len(v) == 5
    assert v.id_objects()[[4, 0]].tolist() == ["é", "abc"]


def test_trials_and_scores_share_one_vocabulary(tmp_path: Path):
    from pyspeaker.data.columns import Vocabulary

    v = Vocabulary()
    first = read_trials(write(tmp_path, "a b target\nb c nontarget\n", "t1"), vocab=v)
    second = read_trials(write(tmp_path, "c d\na b\n", "t2"), vocab=v)
    assert v.ids() == ["a", "b", "c", "d"]
    assert first.enroll_codes.tolist() == [0, 1] and second.enroll_codes.tolist() == [2, 0]
    assert second.test_codes.tolist() == [3, 1] and second.format == "unlabeled" and second.labels is None


@pytest.mark.parametrize("enroll", [["a", "a", "a", "b", "b", "c", "a", "a"], ["a", "b", "c", "a", "d", "e", "f", "g"]])
def test_pair_codes_with_and_without_enroll_runs(enroll: list[str]):
    import pyarrow as pa

    from pyspeaker.data.columns import Vocabulary

    test = ["x", "a", "y", "x", "z", "a", "b", "y"]
    v = Vocabulary()
    v.codes(["y", "a"], grow=True)
    chunked = lambda ids: pa.chunked_array([ids[:3], ids[3:]], type=pa.string())  # noqa: E731
    e, t = v.pair_codes(chunked(enroll), chunked(test), grow=True)
    ids = v.ids()
    assert [ids[c] for c in e] == enroll and [ids[c] for c in t] == test and sorted(ids) == sorted({*enroll, *test})
    e, t = Vocabulary().pair_codes(chunked(enroll), chunked(test))
    assert e.tolist() == [-1] * 8 and t.tolist() == [-1] * 8
