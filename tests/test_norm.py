"""S-norm and AS-norm against slow reference implementations (WeSpeaker's definition), and
``pyspeaker score --score-norm`` end to end."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import run_cli, write_embedding_dir
from pyspeaker.errors import ConfigError, DataError
from pyspeaker.scoring import norm
from pyspeaker.scoring.backend import CosineBackend, score_rows, train_backend
from pyspeaker.store.embeddings import speaker_means


def _wespeaker_reference(emb, mean_vec, cohort, enroll_idx, test_idx, scores, top_n):
    """Literal transcription of wespeaker/bin/score_norm.py (get_mean_std + the per-trial loop)."""
    def mean_std(x):
        x = x / np.sqrt(np.sum(x ** 2, axis=1, keepdims=True))
        c = cohort - mean_vec
        c = c / np.sqrt(np.sum(c ** 2, axis=1, keepdims=True))
        s = np.sort(x @ c.T, axis=1)[:, ::-1][:, :top_n]
        return np.mean(s, axis=1), np.std(s, axis=1)

    x = emb - mean_vec
    e_mean, e_std = mean_std(x)
    t_mean, t_std = e_mean, e_std
    out = []
    for i, j, s in zip(enroll_idx, test_idx, scores):
        out.append(0.5 * ((s - e_mean[i]) / e_std[i] + (s - t_mean[j]) / t_std[j]))
    return np.array(out)


def _slow_stats(score_fn, rows, cohort_size, top_n):
    """Per-row mean/std of the top-n cohort scores, one Python sort per row."""
    means, stds = [], []
    for r in rows:
        s = sorted((score_fn(r, c) for c in range(cohort_size)), reverse=True)[:top_n]
        means.append(np.mean(s))
        stds.append(np.std(s))
    return np.array(means), np.array(stds)


def _data(seed=0, n=40, dim=8, cohort=25):
    rng = np.random.default_rng(seed)
    emb = rng.normal(0.3, 1, (n, dim)).astype(np.float32)
    coh = rng.normal(0.3, 1, (cohort, dim)).astype(np.float32)
    e, t = rng.integers(0, n, 300), rng.integers(0, n, 300)
    return emb, coh, e, t


def test_top_n_stats():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(7, 50))
    for top_n in (1, 5, 49, 50, 80, None):
        m, sd = norm.top_n_stats(s, top_n)
        k = 50 if top_n is None else min(top_n, 50)
        ref = -np.sort(-s, axis=1)[:, :k]
        np.testing.assert_allclose(m, ref.mean(axis=1))
        np.testing.assert_allclose(sd, ref.std(axis=1))


@pytest.mark.parametrize("method,top_n", [("snorm", 300), ("asnorm", 10), ("asnorm", 1000)])
def test_cosine_norm_matches_wespeaker(method, top_n):
    emb, coh, e, t = _data()
    mean = emb.astype(np.float64).mean(axis=0).astype(np.float32)
    backend = CosineBackend(mean)
    raw = score_rows(backend, emb, e, emb, t)
    got = norm.score_norm_rows(backend, raw, emb, e, emb, t, coh, method, top_n)
    ref = _wespeaker_reference(emb.astype(np.float64), mean.astype(np.float64), coh.astype(np.float64), e, t,
                               raw.astype(np.float64), len(coh) if method == "snorm" else top_n)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(norm.score_norm_rows(backend, raw, emb, e, emb, t, coh, "none"), raw)


def test_plda_asnorm_matches_slow_reference():
    rng = np.random.default_rng(2)
    spk = rng.normal(0, 1, (30, 6))
    train = np.repeat(spk, 5, axis=0) + rng.normal(0, 0.5, (150, 6))
    labels = [f"s{i // 5:02d}" for i in range(150)]
    backend, _ = train_backend("plda", train, labels, lda_dim=None)
    utts = [f"u{i}" for i in range(150)]
    _, cohort, _ = speaker_means(utts, train, dict(zip(utts, labels)))
    emb = rng.normal(0, 1.2, (20, 6))
    e, t = rng.integers(0, 20, 100), rng.integers(0, 20, 100)
    raw = score_rows(backend, emb, e, emb, t)
    got = norm.score_norm_rows(backend, raw, emb, e, emb, t, cohort, "asnorm", 7)

    def llr(a, b):  # one pair, enroll a vs test b, through the whole back-end
        return score_rows(backend, np.vstack([a, b]), np.array([0]), np.vstack([a, b]), np.array([1]))[0]

    em, es = _slow_stats(lambda r, c: llr(emb[r], cohort[c]), range(20), len(cohort), 7)
    tm, ts = _slow_stats(lambda r, c: llr(cohort[c], emb[r]), range(20), len(cohort), 7)
    ref = 0.5 * ((raw - em[e]) / es[e] + (raw - tm[t]) / ts[t])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_cohort_stats_in_blocks(monkeypatch):
    emb, coh, _, _ = _data(seed=3)
    full = norm.cohort_stats(emb, None, coh, None, 5)
    monkeypatch.setattr(norm, "_BLOCK_ENTRIES", 3 * len(coh))  # 3 rows per block
    blocked = norm.cohort_stats(emb, None, coh, None, 5)
    np.testing.assert_allclose(blocked, full, rtol=1e-5)  # float32 BLAS sums in another order


@pytest.mark.parametrize("method", ["snorm", "asnorm"])
def test_cohort_of_one_speaker_is_refused(method):
    emb, coh, e, t = _data()
    backend = CosineBackend(emb.astype(np.float64).mean(axis=0).astype(np.float32))
    raw = score_rows(backend, emb, e, emb, t)
    with pytest.raises(DataError) as info:
        norm.score_norm_rows(backend, raw, emb, e, emb, t, coh[:1], method, 10)
    assert str(info.value) == (f"{method} with a cohort of 1 speaker: score normalisation needs at least 2 "
                               "(their scores' spread is the scale)")


@pytest.mark.parametrize("method", ["snorm", "asnorm"])
def test_constant_cohort_scores_are_refused(method):
    # every cohort speaker the same embedding: each embedding's cohort scores are all equal
    emb, coh, e, t = _data()
    backend = CosineBackend(emb.astype(np.float64).mean(axis=0).astype(np.float32))
    raw = score_rows(backend, emb, e, emb, t)
    same = np.repeat(coh[:1], 6, axis=0)
    with pytest.raises(DataError, match=rf"{method}: the cohort scores of 40 enroll embeddings \(first: row 0\) "
                                        r"have zero spread \(all equal\): the cohort's 6 embeddings score alike"):
        norm.score_norm_rows(backend, raw, emb, e, emb, t, same, method, 3)
    with pytest.raises(DataError, match="zero spread"):
        norm.normalize(np.array([1.0]), np.array([0.5]), np.array([0.0]), np.array([0.5]), np.array([0.1]))


def test_asnorm_needs_at_least_two_top_scores():
    emb, coh, e, t = _data()
    backend = CosineBackend()
    raw = score_rows(backend, emb, e, emb, t)
    with pytest.raises(ConfigError, match="asnorm needs --top-n of at least 2, got 1"):
        norm.score_norm_rows(backend, raw, emb, e, emb, t, coh, "asnorm", 1)


# --- pyspeaker score --score-norm -------------------------------------------------------------------

def test_score_command_asnorm_with_backend_cohort(tmp_path):
    rng = np.random.default_rng(4)
    train_ids = [f"tr{s:02d}-{u}" for s in range(12) for u in range(4)]
    train_x = np.repeat(rng.normal(0, 1, (12, 8)), 4, axis=0) + rng.normal(0.5, 0.4, (48, 8))
    write_embedding_dir(tmp_path / "train", train_ids, train_x, [u[:4] for u in train_ids])
    assert run_cli("train-backend", "--embeddings", tmp_path / "train", "--out", tmp_path / "bk").returncode == 0
    with h5py.File(tmp_path / "bk" / "cohort.h5") as f:
        cohort_ids = [s.decode() for s in f["ids"][()]]
        cohort = f["embeddings"][()]
    assert cohort_ids == [f"tr{s:02d}" for s in range(12)]
    np.testing.assert_allclose(cohort, train_x.reshape(12, 4, 8).mean(axis=1), rtol=1e-5)

    test_ids = [f"te{i:02d}" for i in range(15)]
    test_x = rng.normal(0.5, 1, (15, 8)).astype(np.float32)
    write_embedding_dir(tmp_path / "test", test_ids, test_x)
    e, t = rng.integers(0, 15, 50), rng.integers(0, 15, 50)
    (tmp_path / "trials").write_text("".join(f"{test_ids[i]} {test_ids[j]}\n" for i, j in zip(e, t)))
    out = tmp_path / "s" / "scores.txt"
    r = run_cli("score", "--embeddings", tmp_path / "test", "--trials", tmp_path / "trials", "--out", out,
             "--backend-dir", tmp_path / "bk", "--score-norm", "asnorm", "--top-n", "5")
    assert r.returncode == 0, r.stderr
    assert "asnorm (top 5)" in r.stderr
    mean = np.load(tmp_path / "bk" / "mean.npy").astype(np.float64)
    raw = score_rows(CosineBackend(mean.astype(np.float32)), test_x, e, test_x, t).astype(np.float64)
    ref = _wespeaker_reference(test_x.astype(np.float64), mean, cohort.astype(np.float64), e, t, raw, 5)
    got = np.array([float(line.split()[2]) for line in out.read_text().splitlines()])
    np.testing.assert_allclose(got, ref, atol=2e-5)
    side = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert (side["score_norm"], side["top_n"], side["cohort_size"]) == ("asnorm", 5, 12)

    # an explicit --cohort gives the same, S-norm differs; without any cohort it is an error
    out2 = tmp_path / "s2.txt"
    assert run_cli("score", "--embeddings", tmp_path / "test", "--trials", tmp_path / "trials", "--out", out2,
                "--mean", tmp_path / "bk" / "mean.npy", "--score-norm", "asnorm", "--top-n", "5",
                "--cohort", tmp_path / "bk" / "cohort.h5").returncode == 0
    assert out2.read_text() == out.read_text()
    r = run_cli("score", "--embeddings", tmp_path / "test", "--trials", tmp_path / "trials", "--out", out2,
             "--score-norm", "snorm")
    assert r.returncode == 1 and "error: --score-norm snorm needs --cohort" in r.stderr
