"""LDA and PLDA on synthetic Gaussian speakers with known covariances, the scoring kernel, and the
``train-backend`` / ``score --backend-dir`` commands end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import run_cli, write_embedding_dir
from pyspeaker.metrics import compute_eer
from pyspeaker.scoring import kernel
from pyspeaker.scoring.backend import (CosineBackend, PldaBackend, load_backend, read_kaldi_plda, score_rows,
                                       train_backend, write_kaldi_plda)
from pyspeaker.scoring.lda import train_lda, within_between
from pyspeaker.scoring.plda import PldaModel, _kaldi_output, train_plda

DIM = 6
# speaker information lives in dims 2..5; dims 0..1 carry large within-speaker (channel) variation
B_TRUE = np.diag([0.1, 0.1, 1.0, 1.0, 1.0, 1.0])
W_TRUE = np.diag([6.0, 6.0, 0.3, 0.3, 0.3, 0.3])


def _rotation(seed: int = 7) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, DIM)))
    return q


def gaussian_speakers(num_spk: int, per_spk: int, seed: int, rotate: bool = True, offset: float = 3.0):
    """``(ids, X, labels)``: x = m + y_s + e, y ~ N(0, B), e ~ N(0, W) (both rotated by one fixed Q)."""
    rng = np.random.default_rng(seed)
    q = _rotation() if rotate else np.eye(DIM)
    b, w = q @ B_TRUE @ q.T, q @ W_TRUE @ q.T
    y = rng.multivariate_normal(np.zeros(DIM), b, num_spk)
    e = rng.multivariate_normal(np.zeros(DIM), w, (num_spk, per_spk))
    x = offset + y[:, None, :] + e
    labels = [f"spk{s:04d}" for s in range(num_spk) for _ in range(per_spk)]
    ids = [f"spk{s:04d}-u{u:02d}" for s in range(num_spk) for u in range(per_spk)]
    return ids, x.reshape(-1, DIM).astype(np.float32), labels, b, w


def _trials(labels, rng, n=4000):
    """Random pairs, half of them same-speaker."""
    labels = np.asarray(labels)
    by_spk = {s: np.flatnonzero(labels == s) for s in np.unique(labels)}
    spks = list(by_spk)
    e, t, y = [], [], []
    for k in range(n):
        if k % 2 == 0:
            s = spks[rng.integers(len(spks))]
            i, j = rng.choice(by_spk[s], 2, replace=False)
        else:
            i, j = rng.integers(len(labels), size=2)
        e.append(i), t.append(j), y.append(labels[i] == labels[j])
    return np.array(e), np.array(t), np.array(y)


# --- LDA -----------------------------------------------------------------------------------------

def test_lda_whitens_within_and_diagonalises_between():
    _, x, labels, b, w = gaussian_speakers(400, 20, seed=1)
    lda = train_lda(x, labels, dim=4)
    a = lda.transform
    # exact on the sample statistics (what Kaldi's ivector-compute-lda guarantees)
    cls = np.unique(labels, return_inverse=True)[1]
    _, w_hat, b_hat, _ = within_between(x, cls)
    np.testing.assert_allclose(a @ w_hat @ a.T, np.eye(4), atol=1e-8)
    np.testing.assert_allclose(a @ b_hat @ a.T, np.diag(lda.eigenvalues), atol=1e-8)
    assert np.all(np.diff(lda.eigenvalues) <= 0)
    # close to the known covariances (between estimate carries W/n from the class means)
    np.testing.assert_allclose(a @ w @ a.T, np.eye(4), atol=0.12)
    proj_b = a @ b @ a.T
    assert np.max(np.abs(proj_b - np.diag(np.diag(proj_b)))) < 0.3
    # the kept directions are the speaker subspace: the channel dims 0..1 (after rotation) are dropped
    channel = _rotation()[:, :2]
    assert np.linalg.norm(a @ channel) / np.linalg.norm(a) < 0.1
    # the offset makes the mean map to zero; Kaldi's [A | -A m] layout round-trips
    np.testing.assert_allclose(lda.apply(x.astype(np.float64).mean(axis=0, keepdims=True)), 0, atol=1e-9)
    back = type(lda).from_kaldi_matrix(lda.kaldi_matrix())
    np.testing.assert_allclose(back.apply(x[:5]), lda.apply(x[:5]))


def test_lda_dimension_clipped_to_speakers_minus_one(caplog):
    _, x, labels, _, _ = gaussian_speakers(4, 10, seed=2)
    with caplog.at_level("WARNING"):
        lda = train_lda(x, labels, dim=200)
    assert lda.dim == 3
    assert "LDA dimension 200 clipped to 3 (4 speakers - 1)" in caplog.text


# --- PLDA ----------------------------------------------------------------------------------------

def test_plda_em_recovers_known_covariances():
    _, x, labels, b, w = gaussian_speakers(1500, 12, seed=3)
    trained = train_plda(x, labels, num_em_iters=10)
    assert (trained.num_speakers, trained.num_utts) == (1500, 18000)
    rel = lambda est, true: np.linalg.norm(est - true) / np.linalg.norm(true)  # noqa: E731
    assert rel(trained.within, w) < 0.05
    assert rel(trained.between, b) < 0.15
    m = trained.model
    np.testing.assert_allclose(m.mean, x.astype(np.float64).mean(axis=0), atol=1e-9)  # equal counts per speaker
    # Kaldi's stored basis: W -> I, B -> diag(psi), psi descending
    np.testing.assert_allclose(m.transform @ trained.within @ m.transform.T, np.eye(DIM), atol=1e-8)
    np.testing.assert_allclose(m.transform @ trained.between @ m.transform.T, np.diag(m.psi), atol=1e-8)
    assert np.all(np.diff(m.psi) <= 0)


def _exact_llr(m, b, w, e, t, n=1):
    """Two-covariance LLR from the joint Gaussians: p(e, t | same) / (p(e) p(t)), e the mean of n."""
    joint = np.block([[b + w / n, b], [b, b + w]])
    same = multivariate_normal(np.concatenate([m, m]), joint).logpdf(np.hstack([e, t]))
    return same - multivariate_normal(m, b + w / n).logpdf(e) - multivariate_normal(m, b + w).logpdf(t)


@pytest.mark.parametrize("n", [1, 3])
def test_plda_llr_is_the_exact_gaussian_ratio(n):
    rng = np.random.default_rng(4)
    q = _rotation()
    b, w = q @ B_TRUE @ q.T, q @ W_TRUE @ q.T
    mean = rng.normal(size=DIM)
    model = _kaldi_output(mean, w, b)
    e, t = rng.normal(mean, 2, (50, DIM)), rng.normal(mean, 2, (50, DIM))
    exact = _exact_llr(mean, b, w, e, t, n)
    u_e = model.transform_vectors(e, n, normalize_length=False)
    u_t = model.transform_vectors(t, 1, normalize_length=False)
    np.testing.assert_allclose(model.llr(u_e, u_t, n), exact, rtol=1e-9, atol=1e-9)
    (ev, eb), (tv, tb) = model.sides(u_e, u_t, n)
    np.testing.assert_allclose(np.einsum("ij,ij->i", ev, tv) + eb + tb, exact, rtol=1e-9, atol=1e-9)


def test_plda_sides_with_different_enrollment_counts():
    rng = np.random.default_rng(5)
    model = PldaModel(mean=np.zeros(DIM), transform=np.eye(DIM), psi=np.array([5, 3, 2, 1, 0.5, 0.1]))
    e, t = rng.normal(size=(40, DIM)), rng.normal(size=(40, DIM))
    counts = rng.integers(1, 5, 40).astype(float)
    (ev, eb), (tv, tb) = model.sides(e, t, counts)
    assert ev.shape[1] == 2 * DIM  # the test-side quadratic term depends on the count
    got = ev @ tv.T + eb[:, None] + tb[None, :]
    for i in range(0, 40, 7):
        np.testing.assert_allclose(got[i], model.llr(np.repeat(e[i:i + 1], 40, 0), t, counts[i]), rtol=1e-10)


def test_kaldi_length_normalisation():
    model = PldaModel(mean=np.zeros(3), transform=np.eye(3), psi=np.array([4.0, 1.0, 0.25]))
    x = np.array([[1.0, 2.0, -1.0], [0.1, 0.0, 3.0]])
    for n in (1, 4):
        u = model.transform_vectors(x, n)
        np.testing.assert_allclose(np.sum(u ** 2 / (model.psi + 1.0 / n), axis=1), 3.0)
    u = model.transform_vectors(x, simple_length_norm=True)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), np.sqrt(3))


def test_plda_beats_cosine_with_anisotropic_within_class_covariance():
    _, x_train, l_train, _, _ = gaussian_speakers(300, 10, seed=6)
    ids, x_test, l_test, _, _ = gaussian_speakers(200, 6, seed=7)
    e, t, y = _trials(l_test, np.random.default_rng(8))
    eers = {}
    for kind in ("cosine", "plda"):
        backend, _ = train_backend(kind, x_train, l_train, lda_dim=4)
        s = score_rows(backend, x_test, e, x_test, t)
        eers[kind] = compute_eer(s[y], s[~y])[0]
    # the channel dims dominate the cosine; PLDA whitens them away
    assert eers["plda"] < 0.6 * eers["cosine"], eers
    # and comes close to the best possible: the true model's LLR (known B, W, mean; no length norm)
    q = _rotation()
    oracle = _kaldi_output(np.full(DIM, 3.0), q @ W_TRUE @ q.T, q @ B_TRUE @ q.T)
    s = oracle.llr(oracle.transform_vectors(x_test[e], 1, False), oracle.transform_vectors(x_test[t], 1, False))
    eer_oracle = compute_eer(s[y], s[~y])[0]
    assert eer_oracle <= eers["plda"] < eer_oracle + 0.05, (eers, eer_oracle)


def test_plda_backend_matches_slow_reference():
    _, x_train, l_train, _, _ = gaussian_speakers(60, 8, seed=9)
    backend, info = train_backend("plda", x_train, l_train, lda_dim=4)
    assert info["lda_dim"] == 4 and backend.label == "lda4+plda"
    _, x, _, _, _ = gaussian_speakers(10, 3, seed=10)
    e, t = np.arange(30), np.arange(30)[::-1]
    got = score_rows(backend, x, e, x, t)

    def pipeline(v):  # the Kaldi recipe, one vector at a time
        v = v.astype(np.float64) - backend.mean
        v = backend.lda.transform @ v + backend.lda.offset
        v = v * np.sqrt(v.size) / np.linalg.norm(v)
        return backend.plda.transform_vectors(v[None, :])[0]

    ref = [backend.plda.llr(pipeline(x[i])[None], pipeline(x[j])[None])[0] for i, j in zip(e, t)]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


def test_kaldi_plda_file_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    model = PldaModel(mean=rng.normal(size=4), transform=rng.normal(size=(4, 4)), psi=np.array([3.0, 2, 1, 0.5]))
    write_kaldi_plda(tmp_path / "plda", model)
    data = (tmp_path / "plda").read_bytes()
    assert data.startswith(b"\x00B<Plda> DV \x04\x04\x00\x00\x00") and data.endswith(b"</Plda> ")
    assert len(data) == 2 + 7 + 3 + 5 + 32 + 3 + 10 + 128 + 3 + 5 + 32 + 8
    back = read_kaldi_plda(tmp_path / "plda")
    for name in ("mean", "transform", "psi"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))


# --- kernel ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_strategies_agree(dtype):
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(300, 16)).astype(dtype), rng.normal(size=(200, 16)).astype(dtype)
    ar, br = rng.integers(0, 300, 5000), rng.integers(0, 200, 5000)
    ab, bb = rng.normal(size=300), rng.normal(size=200)
    ref = np.einsum("ij,ij->i", a[ar].astype(np.float64), b[br].astype(np.float64)) + ab[ar] + bb[br]
    tol = 1e-4 if dtype == np.float32 else 1e-10
    results = {
        "matrix": kernel.pair_scores(a, b, ar, br, ab, bb),
        "gather": kernel.pair_scores(a, b, ar, br, ab, bb, matrix_max_entries=0, chunk_values=16 * 37,
                                     sddmm_min_trials=10 ** 9),
        "sddmm": kernel.pair_scores(a, b, ar, br, ab, bb, matrix_max_entries=0, sddmm_min_trials=0),
        "sddmm-sorted": kernel.pair_scores(a, b, np.sort(ar), br[np.argsort(ar, kind="stable")], ab, bb,
                                           matrix_max_entries=0, sddmm_min_trials=0),
    }
    for name, got in results.items():
        assert got.dtype == dtype, name
        expected = ref if name != "sddmm-sorted" else (
            np.einsum("ij,ij->i", a[np.sort(ar)].astype(np.float64), b[br[np.argsort(ar, kind="stable")]])
            + ab[np.sort(ar)] + bb[br[np.argsort(ar, kind="stable")]])
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=name)
    # trials grouped by enroll row (the gather path reads each run's row once), runs across chunk edges
    runs = np.repeat(rng.integers(0, 300, 500), rng.integers(1, 15, 500))[:5000]
    got = kernel.pair_scores(a, b, runs, br[:len(runs)], matrix_max_entries=0, chunk_values=16 * 37,
                             sddmm_min_trials=10 ** 9)
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", a[runs], b[br[:len(runs)]]), rtol=tol, atol=tol)
    assert kernel.pair_scores(a, b, np.array([], int), np.array([], int)).shape == (0,)


def test_used_rows():
    used, local = kernel.used_rows(np.array([5, 2, 5, 9]), 10)
    assert used.tolist() == [2, 5, 9] and local.tolist() == [1, 0, 1, 2]


# --- commands ------------------------------------------------------------------------------------

def test_train_backend_and_score_plda_end_to_end(tmp_path):
    ids, x, labels, _, _ = gaussian_speakers(8, 6, seed=13)
    train = write_embedding_dir(tmp_path / "train", ids, x, labels)
    r = run_cli("train-backend", "--backend", "plda", "--embeddings", train, "--out", tmp_path / "backend")
    assert r.returncode == 0, r.stderr
    assert "LDA dimension 200 clipped to 6 (embedding dimension 6)" in r.stderr
    meta = json.loads((tmp_path / "backend" / "backend.json").read_text())
    assert meta["backend"] == "plda" and meta["label"] == "lda6+plda" and meta["lda_dim"] == 6
    assert meta["num_speakers"] == 8 and meta["num_embeddings"] == 48 and meta["cohort"]["num_speakers"] == 8
    assert set(meta["files"].values()) <= {p.name for p in (tmp_path / "backend").iterdir()}
    import kaldiio

    np.testing.assert_allclose(kaldiio.load_mat(str(tmp_path / "backend" / "mean.vec")), x.mean(axis=0), rtol=1e-5)
    assert kaldiio.load_mat(str(tmp_path / "backend" / "transform.mat")).shape == (6, 7)
    backend, _ = load_backend(tmp_path / "backend")
    assert isinstance(backend, PldaBackend)
    np.testing.assert_array_equal(read_kaldi_plda(tmp_path / "backend" / "plda").psi, backend.plda.psi)

    test_ids, x_test, test_labels, _, _ = gaussian_speakers(5, 4, seed=14)
    test_ids = [f"t-{u}" for u in test_ids]
    test = write_embedding_dir(tmp_path / "test", test_ids, x_test)
    rng = np.random.default_rng(0)
    pairs = [(test_ids[i], test_ids[j]) for i, j in rng.integers(0, 20, (40, 2))]
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{a} {b} {'target' if a[:9] == b[:9] else 'nontarget'}\n" for a, b in pairs))
    out = tmp_path / "scores" / "scores.txt"
    r = run_cli("score", "--embeddings", test, "--trials", trials, "--out", out, "--backend-dir", tmp_path / "backend")
    assert r.returncode == 0, r.stderr
    assert "lda6+plda" in r.stderr
    rows = {u: i for i, u in enumerate(test_ids)}
    e, t = np.array([rows[a] for a, _ in pairs]), np.array([rows[b] for _, b in pairs])
    expected = score_rows(backend, x_test, e, x_test, t)
    lines = out.read_text().splitlines()
    assert [ln.split()[:2] for ln in lines] == [list(p) for p in pairs]
    np.testing.assert_allclose([float(ln.split()[2]) for ln in lines], expected, atol=1e-6)
    side = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert side["backend"] == "lda6+plda" and side["score_norm"] == "none" and side["num_trials"] == 40
    assert side["scores_bytes"] == out.stat().st_size and side["trials_lines"] == 40

    # compute-metrics takes the labels from the sidecar
    r = run_cli("compute-metrics", "--scores", out, "--trials", trials, "--out", tmp_path / "m.json")
    assert r.returncode == 0, r.stderr
    assert "back-end: lda6+plda, score normalisation: none" in r.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert (m["backend"], m["score_norm"], m["trials_lines"]) == ("lda6+plda", "none", 40)


def test_train_backend_cosine_keeps_mean_npy_interface(tmp_path):
    ids, x, labels, _, _ = gaussian_speakers(4, 5, seed=15)
    train = write_embedding_dir(tmp_path / "train", ids, x)  # no utt2spk: cosine needs none (and gets no cohort)
    r = run_cli("train-backend", "--embeddings", train, "--out", tmp_path / "backend")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "backend" / "backend.json").read_text())
    assert meta["backend"] == "cosine" and meta["files"]["mean"] == "mean.npy" and "cohort" not in meta
    np.testing.assert_allclose(np.load(tmp_path / "backend" / "mean.npy"), x.astype(np.float64).mean(0), rtol=1e-6)
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{ids[i]} {ids[(i * 7) % 20]} nontarget\n" for i in range(20)))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert run_cli("score", "--embeddings", train, "--trials", trials, "--out", a, "--mean",
                tmp_path / "backend" / "mean.npy").returncode == 0
    assert run_cli("score", "--embeddings", train, "--trials", trials, "--out", b, "--backend-dir",
                tmp_path / "backend").returncode == 0
    assert a.read_text() == b.read_text()
    mean = np.load(tmp_path / "backend" / "mean.npy")
    backend = CosineBackend(mean)
    assert backend.label == "cosine+mean"
    assert json.loads((tmp_path / "b.json").read_text())["backend"] == "cosine+mean"


def test_train_backend_errors(tmp_path):
    ids, x, labels, _, _ = gaussian_speakers(4, 5, seed=16)
    train = write_embedding_dir(tmp_path / "train", ids, x)
    r = run_cli("train-backend", "--backend", "plda", "--embeddings", train, "--out", tmp_path / "b")
    assert r.returncode == 1
    assert "error: the plda back-end needs speaker labels" in r.stderr
    utt2spk = tmp_path / "utt2spk"
    utt2spk.write_text("".join(f"{u} {s}\n" for u, s in list(zip(ids, labels))[1:]))
    r = run_cli("train-backend", "--backend", "plda", "--embeddings", train, "--utt2spk", utt2spk, "--out",
             tmp_path / "b")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f"error: {utt2spk}: no speaker for embedding '{ids[0]}'"
    assert not (tmp_path / "b").exists()
    trials = tmp_path / "trials"
    trials.write_text(f"{ids[0]} {ids[1]}\n")
    np.save(tmp_path / "mean.npy", np.zeros(DIM))
    (tmp_path / "bk").mkdir()
    r = run_cli("score", "--embeddings", train, "--trials", trials, "--out", tmp_path / "s.txt", "--backend-dir",
             tmp_path / "bk")
    assert r.returncode == 1 and "no backend.json in this directory" in r.stderr
    r = run_cli("score", "--embeddings", train, "--trials", trials, "--out", tmp_path / "s.txt", "--backend-dir",
             tmp_path / "bk", "--mean", tmp_path / "mean.npy")
    assert r.returncode == 1 and "give --backend-dir or a mean" in r.stderr


def test_score_plda_with_enrollment_counts(tmp_path):
    ids, x, labels, _, _ = gaussian_speakers(10, 5, seed=17)
    train = write_embedding_dir(tmp_path / "train", ids, x, labels)
    assert run_cli("train-backend", "--backend", "plda", "--lda-dim", "4", "--embeddings", train, "--out",
                tmp_path / "bk").returncode == 0
    test_ids = [f"e{i}" for i in range(6)]
    x_test = gaussian_speakers(6, 1, seed=18)[1]
    test = write_embedding_dir(tmp_path / "test", test_ids, x_test)
    (tmp_path / "num_utts.ark").write_text("e0 3\ne2 5\n")  # the others count 1
    (tmp_path / "trials").write_text("".join(f"e{i} e{(i + 1) % 6}\n" for i in range(6)))
    out = tmp_path / "s.txt"
    r = run_cli("score", "--embeddings", test, "--trials", tmp_path / "trials", "--out", out, "--backend-dir",
             tmp_path / "bk", "--num-utts", tmp_path / "num_utts.ark")
    assert r.returncode == 0, r.stderr
    backend, _ = load_backend(tmp_path / "bk")
    counts = np.array([3, 1, 5, 1, 1, 1], dtype=float)
    e, t = np.arange(6), (np.arange(6) + 1) % 6
    expected = score_rows(backend, x_test, e, x_test, t, num_utts=counts)
    got = [float(line.split()[2]) for line in out.read_text().splitlines()]
    np.testing.assert_allclose(got, expected, atol=2e-6)
    plain = score_rows(backend, x_test, e, x_test, t)
    assert not np.isclose(got[0], plain[0]) and np.isclose(got[1], plain[1])
    # Kaldi's binary int32 table reads the same (one num_utts reader: store.kaldi_vectors.read_num_utts)
    from pyspeaker.store.kaldi_vectors import write_num_utts

    write_num_utts(tmp_path / "num_utts.ark", {"e0": 3, "e2": 5}, binary=True)
    r = run_cli("score", "--embeddings", test, "--trials", tmp_path / "trials", "--out", tmp_path / "b.txt",
                "--backend-dir", tmp_path / "bk", "--num-utts", tmp_path / "num_utts.ark")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.txt").read_text() == out.read_text()
    for text, message in (("e0 x\n", ":1: count 'x' is not an integer"),
                          ("e0 2\ne1 0\n", ":2: count 0 must be at least 1")):
        (tmp_path / "num_utts.ark").write_text(text)
        r = run_cli("score", "--embeddings", test, "--trials", tmp_path / "trials", "--out", out, "--backend-dir",
                    tmp_path / "bk", "--num-utts", tmp_path / "num_utts.ark")
        assert r.returncode == 1 and f"{tmp_path / 'num_utts.ark'}{message}" in r.stderr
