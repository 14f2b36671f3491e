"""Cosine scoring: score_codes against a naive loop, errors, and ``pyspeaker score`` end to end."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pyspeaker.data.trials import Trials, read_trials
from pyspeaker.errors import DataError
from pyspeaker.scoring import kernel
from pyspeaker.scoring.backend import CosineBackend
from pyspeaker.scoring.pipeline import score_codes


def _naive(ids, emb, enroll, test, mean=None, test_ids=None, test_emb=None):
    test_ids, test_emb = (ids, emb) if test_ids is None else (test_ids, test_emb)
    e_row, t_row = {u: i for i, u in enumerate(ids)}, {u: i for i, u in enumerate(test_ids)}
    out = []
    for a, b in zip(enroll, test):
        x = emb[e_row[a]].astype(np.float64)
        y = test_emb[t_row[b]].astype(np.float64)
        if mean is not None:
            x, y = x - mean, y - mean
        out.append(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
    return np.array(out)


def _random_case(seed=0, n_ids=50, dim=16, n_trials=400):
    rng = np.random.default_rng(seed)
    ids = [f"utt{i:03d}" for i in range(n_ids)]
    emb = rng.normal(0.5, 1, (n_ids, dim)).astype(np.float32)
    enroll = [ids[i] for i in rng.integers(0, n_ids, n_trials)]
    test = [ids[i] for i in rng.integers(0, n_ids, n_trials)]
    return ids, emb, Trials(enroll=enroll, test=test, labels=None, path="trials")


@pytest.mark.parametrize("matrix_path", [True, False])
def test_score_codes_matches_naive(monkeypatch, matrix_path):
    if not matrix_path:  # force the chunked gather path, with small chunks
        monkeypatch.setattr(kernel, "MATRIX_MAX_ENTRIES", 0)
        monkeypatch.setattr(kernel, "CHUNK_VALUES", 16 * 7)
    ids, emb, trials = _random_case()
    scores = score_codes(trials, ids, emb)
    assert scores.dtype == np.float32 and scores.shape == (400,)
    np.testing.assert_allclose(scores, _naive(ids, emb, trials.enroll, trials.test), atol=1e-5)
    mean = emb.mean(axis=0)
    np.testing.assert_allclose(score_codes(trials, ids, emb, backend=CosineBackend(mean)),
                               _naive(ids, emb, trials.enroll, trials.test, mean=mean), atol=1e-5)


def test_score_codes_separate_test_embeddings():
    ids, emb, trials = _random_case(seed=1)
    rng = np.random.default_rng(2)
    test_ids = [f"test{i}" for i in range(30)]
    test_emb = rng.normal(size=(30, 16)).astype(np.float32)
    trials = Trials(trials.enroll, [test_ids[i] for i in rng.integers(0, 30, len(trials))], path="trials")
    scores = score_codes(trials, ids, emb, test_ids=test_ids, test_emb=test_emb)
    np.testing.assert_allclose(scores, _naive(ids, emb, trials.enroll, trials.test, test_ids=test_ids,
                                              test_emb=test_emb), atol=1e-5)
    with pytest.raises(ValueError, match="both test_ids and test_emb"):
        score_codes(trials, ids, emb, test_ids=test_ids)


def test_score_codes_changes_the_embeddings_only_when_allowed():
    ids, emb, trials = _random_case(seed=3)
    before = emb.copy()
    mean = before.mean(axis=0)
    kept = score_codes(trials, ids, emb, backend=CosineBackend(mean))
    assert np.array_equal(emb, before)
    normed = score_codes(trials, ids, emb, backend=CosineBackend(mean), overwrite=True)
    np.testing.assert_array_equal(normed, kept)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-6)  # normalised in place
    emb = before.copy()
    score_codes(trials, ids, emb, backend=CosineBackend(mean), overwrite=True, score_norm="snorm", cohort=before[:9])
    assert np.array_equal(emb, before)  # the norm reads them again: left as they are


def test_score_codes_self_and_opposite():
    emb = np.array([[1, 0], [2, 0], [-3, 0], [0, 0.5]], dtype=np.float32)
    ids = ["a", "b", "c", "d"]
    trials = Trials(enroll=["a", "a", "a", "b"], test=["b", "c", "d", "b"], path="t")
    np.testing.assert_allclose(score_codes(trials, ids, emb), [1, -1, 0, 1], atol=1e-6)


def test_missing_id_error_names_first_line(tmp_path):
    ids, emb, _ = _random_case(n_ids=5)
    path = tmp_path / "trials"
    path.write_text("utt000 utt001 target\nutt002 utt003 nontarget\nutt004 nobody nontarget\nghost utt000 target\n")
    trials = read_trials(path)
    with pytest.raises(DataError) as err:
        score_codes(trials, ids, emb)
    assert str(err.value) == f"{path}:3: no embedding for test id 'nobody' (2 trials in all lack an embedding)"
    assert err.value.line == 3
    path.write_text("utt000 utt001 target\nghost utt000 target\nutt004 nobody nontarget\n")
    with pytest.raises(DataError) as err:
        score_codes(read_trials(path), ids, emb)
    assert str(err.value) == f"{path}:2: no embedding for enroll id 'ghost' (2 trials in all lack an embedding)"


def test_dimension_mismatch():
    ids, emb, trials = _random_case()
    with pytest.raises(DataError, match="mean has dimension 3 but embeddings have 16"):
        score_codes(trials, ids, emb, backend=CosineBackend(np.zeros(3)))
    with pytest.raises(DataError, match="enroll embeddings have dimension 16 but test embeddings have 8"):
        score_codes(trials, ids, emb, test_ids=ids, test_emb=emb[:, :8])


# --- pyspeaker score end to end -----------------------------------------------------------------

def _write_h5(path: Path, ids, emb):
    path.mkdir(parents=True, exist_ok=True)
    with h5py.File(path / "xvector.h5", "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=np.asarray(emb, dtype=np.float32))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyspeaker", "score", *args], capture_output=True, text=True,
                          timeout=120)


def test_score_command_end_to_end(tmp_path):
    ids, emb, trials = _random_case(n_trials=60)
    labels = ["target" if i % 3 == 0 else "nontarget" for i in range(60)]
    trials_path = tmp_path / "trials"
    trials_path.write_text("".join(f"{e} {t} {y}\n" for e, t, y in zip(trials.enroll, trials.test, labels)))
    _write_h5(tmp_path / "emb", ids, emb)
    out = tmp_path / "scores" / "scores.txt"
    r = _run("--embeddings", str(tmp_path / "emb"), "--trials", str(trials_path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "scored 60 trials" in r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 60
    expected = _naive(ids, emb, trials.enroll, trials.test)
    for line, e, t, s in zip(lines, trials.enroll, trials.test, expected):
        fields = line.split(" ")
        assert fields[:2] == [e, t]
        assert len(fields[2].split(".")[1]) == 6  # %.6f
        assert float(fields[2]) == pytest.approx(s, abs=2e-6)

    # mean from a set of embeddings, and the same mean given as .npy: identical files
    _write_h5(tmp_path / "train", ids[:10], emb[:10] + 1)
    np.save(tmp_path / "mean.npy", (emb[:10] + 1).astype(np.float64).mean(axis=0))
    out1, out2 = tmp_path / "s1.txt", tmp_path / "s2.txt"
    assert _run("--embeddings", str(tmp_path / "emb"), "--trials", str(trials_path), "--out", str(out1),
                "--mean-from", str(tmp_path / "train")).returncode == 0
    assert _run("--embeddings", str(tmp_path / "emb" / "xvector.h5"), "--trials", str(trials_path),
                "--out", str(out2), "--mean", str(tmp_path / "mean.npy")).returncode == 0
    assert out1.read_text() == out2.read_text()
    mean = (emb[:10] + 1).mean(axis=0)
    got = np.array([float(x.split()[2]) for x in out1.read_text().splitlines()])
    np.testing.assert_allclose(got, _naive(ids, emb, trials.enroll, trials.test, mean=mean), atol=2e-6)

    # scores feed compute-metrics directly
    r = subprocess.run([sys.executable, "-m", "pyspeaker", "compute-metrics", "--scores", str(out),
                        "--trials", str(trials_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "EER: " in r.stdout


def test_score_command_test_embeddings_from_scp(tmp_path):
    import kaldiio

    rng = np.random.default_rng(4)
    enroll_ids, test_ids = ["spkA", "spkB"], ["u1", "u2", "u3"]
    enroll_emb = rng.normal(size=(2, 8)).astype(np.float32)
    test_emb = rng.normal(size=(3, 8)).astype(np.float32)
    _write_h5(tmp_path / "enroll", enroll_ids, enroll_emb)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/test.ark,{tmp_path}/test.scp") as w:
        for u, v in zip(test_ids, test_emb):
            w(u, v)
    trials_path = tmp_path / "trials"
    trials_path.write_text("1 spkA u1\n0 spkA u2\n0 spkB u1\n1 spkB u3\n")  # VoxCeleb format
    out = tmp_path / "scores.txt"
    r = _run("--embeddings", str(tmp_path / "enroll"), "--test-embeddings", str(tmp_path / "test.scp"),
             "--trials", str(trials_path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    expected = _naive(enroll_ids, enroll_emb, ["spkA", "spkA", "spkB", "spkB"], ["u1", "u2", "u1", "u3"],
                      test_ids=test_ids, test_emb=test_emb)
    assert out.read_text() == "".join(f"{e} {t} {s:.6f}\n" for (e, t), s in
                                      zip([("spkA", "u1"), ("spkA", "u2"), ("spkB", "u1"), ("spkB", "u3")], expected))


def test_score_command_missing_embedding_error(tmp_path):
    ids, emb, _ = _random_case(n_ids=4)
    _write_h5(tmp_path / "emb", ids, emb)
    trials_path = tmp_path / "trials"
    trials_path.write_text("utt000 utt001 target\nutt001 utt009 nontarget\n")
    out = tmp_path / "scores.txt"
    out.write_text("old result\n")
    r = _run("--embeddings", str(tmp_path / "emb"), "--trials", str(trials_path), "--out", str(out))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f"error: {trials_path}:2: no embedding for test id 'utt009'"
    assert out.read_text() == "old result\n"  # an earlier result survives a failed run


def test_score_command_mean_options_exclusive(tmp_path):
    ids, emb, _ = _random_case(n_ids=4)
    _write_h5(tmp_path / "emb", ids, emb)
    np.save(tmp_path / "mean.npy", np.zeros(16))
    (tmp_path / "trials").write_text("utt000 utt001\n")
    r = _run("--embeddings", str(tmp_path / "emb"), "--trials", str(tmp_path / "trials"), "--out",
             str(tmp_path / "s.txt"), "--mean", str(tmp_path / "mean.npy"), "--mean-from", str(tmp_path / "emb"))
    assert r.returncode == 1
    assert "error: give --mean-from or --mean, not both" in r.stderr


# --- the streaming pipeline: score text, writer ---------------------------------------------------

def test_score_strings_are_printf_exact():
    from pyspeaker.scoring.lists import score_strings

    rng = np.random.default_rng(0)
    edge = [0.0, -0.0, -1e-9, 1e-9, 5e-7, 1.5e-6, 0.1234565, -0.1234565, 0.9999995, 999.9999995, 12345.678,
            -54321.5, np.nan, np.inf, -np.inf, 1.0, -1.0, 2.5e-7, 1e300, 999.999999, -9.9999996, 99.99999951]
    x = np.concatenate([edge, rng.normal(size=20000), rng.normal(0, 100, 20000), np.round(rng.normal(size=5000), 7),
                        rng.normal(size=2000).astype(np.float32)])
    for precision in (1, 3, 6, 9):
        assert score_strings(x, precision).to_pylist() == ["%.*f" % (precision, v) for v in x]
    assert score_strings(x[:50], 6, end="\n").to_pylist() == ["%.6f\n" % v for v in x[:50]]
    assert score_strings(np.array([])).to_pylist() == []
    with pytest.raises(ValueError):
        score_strings(x, 0)


def test_score_command_streams_large_lists_in_blocks(tmp_path, monkeypatch):
    """Blocks of a few lines, ids of several widths, tabs in some lines: the naive scores, written
    in trial order a few lines at a time."""
    from pyspeaker.data import columns
    from pyspeaker.scoring.lists import write_scores

    rng = np.random.default_rng(7)
    ids = [f"spk{i % 9}/{'x' * (i % 23)}utt{i}" for i in range(60)]
    emb = rng.normal(size=(60, 12)).astype(np.float32)
    pairs = [(ids[i], ids[j]) for i, j in rng.integers(0, 60, (700, 2))]
    text = "".join(f"{a}\t{b} target\n" if k % 97 == 5 else f"{a} {b} nontarget\n" for k, (a, b) in enumerate(pairs))
    path = tmp_path / "trials"
    path.write_text(text)
    monkeypatch.setattr(columns, "BLOCK_BYTES", 333)
    monkeypatch.setattr(columns, "WRITE_LINES", 64)
    trials = read_trials(path)
    assert (trials.enroll, trials.test) == ([a for a, _ in pairs], [b for _, b in pairs])
    scores = score_codes(trials, ids, emb)
    np.testing.assert_allclose(scores, _naive(ids, emb, *zip(*pairs)), atol=1e-6)
    size = write_scores(tmp_path / "s.txt", trials, scores)
    expected = "".join(f"{a} {b} {s:.6f}\n" for (a, b), s in zip(pairs, scores.tolist()))
    assert (tmp_path / "s.txt").read_text() == expected and size == len(expected.encode())
