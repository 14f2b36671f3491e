"""local/prepare_mini.py: the synthetic default corpus (WAVs, Kaldi data dirs, trials).

The script is run as a user runs it (subprocess, this interpreter) on a small setting in tmp_path;
the outputs are read back with soundfile and plain text parsing.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "local" / "prepare_mini.py"
MIN_DUR, MAX_DUR = 1.5, 3.0
N_TRAIN, N_TEST, N_UTT = 3, 6, 4
SMALL = ["--num-train-speakers", N_TRAIN, "--num-test-speakers", N_TEST, "--utts-per-speaker", N_UTT,
         "--min-duration", MIN_DUR, "--max-duration", MAX_DUR]


def run_script(*args, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def make(root: Path, *extra) -> subprocess.CompletedProcess:
    return run_script("--audio-dir", root / "wav", "--data-dir", root / "data", *SMALL, *extra)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("mini")
    return root, make(root).stdout


def read_lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n"), f"{path} lacks a trailing newline"
    return text[:-1].split("\n")


def read_map(path: Path) -> dict[str, str]:
    out = {}
    for line in read_lines(path):
        key, value = line.split(" ", 1)
        out[key] = value
    return out


def tree_digest(root: Path) -> dict[str, str]:
    """sha1 of every file under root (wav.scp with the root prefix removed: it holds absolute paths)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "wav.scp":
                data = data.replace(str(root.resolve()).encode(), b"ROOT")
            out[str(p.relative_to(root))] = hashlib.sha1(data).hexdigest()
    return out


def test_help():
    proc = run_script("--help")
    for opt in ("--audio-dir", "--data-dir", "--num-train-speakers", "--num-test-speakers", "--utts-per-speaker",
                "--min-duration", "--max-duration", "--seed", "--sample-rate", "--num-trials", "--jobs"):
        assert opt in proc.stdout


def test_layout_and_summary(corpus):
    root, stdout = corpus
    n_target = N_TEST * N_UTT * (N_UTT - 1) // 2
    assert f"speakers: {N_TRAIN} train + {N_TEST} test" in stdout
    assert f"utterances: {N_TRAIN * N_UTT} train + {N_TEST * N_UTT} test" in stdout
    assert f"trials: {2 * n_target} ({n_target} target, {n_target} nontarget)" in stdout
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        assert (root / "data" / "train" / name).is_file()
        assert (root / "data" / "test" / name).is_file()
    assert (root / "data" / "test" / "trials").is_file()
    assert not (root / "data" / "train" / "trials").exists()
    assert sorted(p.name for p in (root / "wav").iterdir()) == [f"spk{i:03d}" for i in range(1, N_TRAIN + N_TEST + 1)]
    # No temporary leftovers of the atomic writes.
    for d in (root, root / "data"):
        assert not [p.name for p in d.iterdir() if p.name.startswith(".")]
    for part in ("train", "test"):
        wav = read_map(root / "data" / part / "wav.scp")
        for utt, path in wav.items():
            spk = utt.split("-")[0]
            assert Path(path).is_absolute()
            assert Path(path) == (root / "wav" / spk / f"{utt}.wav").resolve()
            assert Path(path).is_file()


def test_wavs_format_and_durations(corpus):
    root, _ = corpus
    for part in ("train", "test"):
        wav = read_map(root / "data" / part / "wav.scp")
        dur = read_map(root / "data" / part / "utt2dur")
        assert set(dur) == set(wav)
        for utt, path in wav.items():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "WAV", "PCM_16")
            seconds = info.frames / info.samplerate
            assert MIN_DUR <= seconds <= MAX_DUR
            assert abs(seconds - float(dur[utt])) <= 0.001
            assert len(dur[utt].split(".")[1]) == 3
            x, _ = sf.read(path)
            rms_db = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
            assert -45.0 < rms_db < -10.0 and np.abs(x).max() < 0.99
            # Leading silence holds low background noise only (20-40 dB SNR, never digital zero).
            lead = np.sqrt(np.mean(x[:400] ** 2))
            assert 0.0 < lead < np.sqrt(np.mean(x ** 2))


def test_data_files_sorted_and_consistent(corpus):
    root, _ = corpus
    speakers = {}
    for part in ("train", "test"):
        d = root / "data" / part
        for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
            lines = read_lines(d / name)
            assert lines == sorted(lines), name
            keys = [line.split(" ")[0] for line in lines]
            assert keys == sorted(set(keys)), name
            assert all("  " not in line and line == line.strip() for line in lines), name
        utt2spk = read_map(d / "utt2spk")
        spk2utt = {s: u.split(" ") for s, u in read_map(d / "spk2utt").items()}
        assert set(utt2spk) == set(read_map(d / "wav.scp"))
        assert {u: s for s, us in spk2utt.items() for u in us} == utt2spk
        for spk, utts in spk2utt.items():
            assert utts == sorted(utts) and len(utts) == N_UTT
            assert utts == [f"{spk}-u{i:04d}" for i in range(1, N_UTT + 1)]
        speakers[part] = set(spk2utt)
    assert speakers["train"] == {f"spk{i:03d}" for i in range(1, N_TRAIN + 1)}
    assert speakers["test"] == {f"spk{i:03d}" for i in range(N_TRAIN + 1, N_TRAIN + N_TEST + 1)}
    assert not speakers["train"] & speakers["test"]


def check_trials(data: Path) -> list[tuple[str, str, str]]:
    trials = [tuple(line.split(" ")) for line in read_lines(data / "test" / "trials")]
    utt2spk = read_map(data / "test" / "utt2spk")
    assert all(len(t) == 3 for t in trials)
    labels = [t[2] for t in trials]
    assert set(labels) <= {"target", "nontarget"}
    assert labels.count("target") == labels.count("nontarget") > 0
    pairs = [frozenset(t[:2]) for t in trials]
    assert len(set(pairs)) == len(pairs), "a pair occurs twice"
    for enroll, test, label in trials:
        assert enroll != test
        assert enroll in utt2spk and test in utt2spk
        assert (utt2spk[enroll] == utt2spk[test]) == (label == "target")
    return trials


def test_trials(corpus):
    root, _ = corpus
    trials = check_trials(root / "data")
    # Few test utterances: every target pair is used (the 2000-line default is capped).
    assert len(trials) == 2 * N_TEST * N_UTT * (N_UTT - 1) // 2
    # Shuffled, not grouped by label or speaker.
    labels = [t[2] for t in trials]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)


def test_deterministic_whatever_jobs(corpus, tmp_path):
    root, _ = corpus
    make(tmp_path, "--jobs", "2")
    assert tree_digest(tmp_path) == tree_digest(root)


def test_dense_trials_rerun_and_seed(tmp_path):
    # 2 test speakers x 3 utts: 6 target and 9 nontarget pairs (all cross-speaker pairs enumerated).
    args = ["--audio-dir", tmp_path / "wav", "--data-dir", tmp_path / "data", "--num-train-speakers", 1,
            "--num-test-speakers", 2, "--utts-per-speaker", 3, "--min-duration", 0.3, "--max-duration", 0.5]
    run_script(*args)
    assert len(check_trials(tmp_path / "data")) == 12
    first = tree_digest(tmp_path)
    # A rerun replaces the old trees as a whole and leaves no temporaries.
    (tmp_path / "wav" / "stale.txt").write_text("old")
    (tmp_path / "data" / "test" / "stale").write_text("old")
    run_script(*args)
    assert tree_digest(tmp_path) == first
    assert not list(tmp_path.rglob(".*"))
    proc = run_script(*args, "--num-trials", 4, "--seed", 1)
    assert len(check_trials(tmp_path / "data")) == 4
    assert "trials: 4 (2 target, 2 nontarget)" in proc.stdout
    second = tree_digest(tmp_path)
    wavs = [k for k in first if k.endswith(".wav")]
    assert len(wavs) == 9 and all(first[k] != second[k] for k in wavs)


def test_bad_options_fail_cleanly(tmp_path):
    proc = run_script("--audio-dir", tmp_path / "wav", "--data-dir", tmp_path / "data",
                      "--min-duration", 3, "--max-duration", 2, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: need 0.2 <= --min-duration <= --max-duration, got 3.0 and 2.0"
    assert not (tmp_path / "wav").exists() and not (tmp_path / "data").exists()
    proc = run_script("--audio-dir", tmp_path / "wav", "--data-dir", tmp_path / "data",
                      "--utts-per-speaker", 1, check=False)
    assert proc.returncode == 1 and "--utts-per-speaker" in proc.stderr
    # Audio inside a data dir that gets replaced as a whole would be deleted: refused.
    proc = run_script("--audio-dir", tmp_path / "data" / "test" / "wav", "--data-dir", tmp_path / "data", check=False)
    assert proc.returncode == 1 and "lies inside" in proc.stderr
    assert not (tmp_path / "data").exists()


def frames_of(x: np.ndarray, sr: int, win_s: float) -> np.ndarray:
    hop, win = sr // 100, int(sr * win_s)
    n = (len(x) - win) // hop + 1
    return x[np.arange(win)[None, :] + hop * np.arange(n)[:, None]]


def mean_log_spectrum(x: np.ndarray, sr: int, n_bands: int = 32) -> np.ndarray:
    """Mean log power in log-spaced bands over frames within 30 dB of the loudest, level-normalised."""
    frames = frames_of(x, sr, 0.025)
    power = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), 512)) ** 2 + 1e-10
    energy = 10 * np.log10(power.sum(1))
    power = power[energy > energy.max() - 30]
    edges = np.unique(np.round(np.geomspace(2, 257, n_bands + 1)).astype(int))
    mean = np.log(np.add.reduceat(power, edges[:-1], axis=1)).mean(0)
    return mean - mean.mean()   # the level is random per utterance: compare shapes only


def median_log_f0(x: np.ndarray, sr: int) -> float:
    """Median autocorrelation pitch (70-400 Hz) of the loud frames, as log Hz."""
    frames = frames_of(x, sr, 0.04)
    frames = frames - frames.mean(1, keepdims=True)
    energy = 10 * np.log10((frames ** 2).sum(1) + 1e-12)
    frames = frames[energy > energy.max() - 15]
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), 2048)) ** 2)
    lo, hi = sr // 400, sr // 70
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    return float(np.median(np.log(sr / lag)))


def eer(scores: np.ndarray, is_target: np.ndarray) -> float:
    order = np.argsort(scores)
    t = is_target[order]
    miss = np.cumsum(t) / t.sum()                       # targets at or below the threshold
    false_alarm = 1 - np.cumsum(~t) / (~t).sum()        # nontargets above it
    i = np.argmin(np.abs(miss - false_alarm))
    return float(miss[i] + false_alarm[i]) / 2


def test_voices_differ(corpus):
    """Crude pitch and mean-spectrum scoring separate the speakers clearly better than chance,
    loudness does not."""
    root, _ = corpus
    audio = {}
    for part in ("train", "test"):
        for utt, path in read_map(root / "data" / part / "wav.scp").items():
            audio[utt], sr = sf.read(path)
    trials = check_trials(root / "data")
    is_target = np.array([label == "target" for _, _, label in trials])

    f0 = {u: median_log_f0(x, sr) for u, x in audio.items()}
    assert eer(np.array([-abs(f0[a] - f0[b]) for a, b, _ in trials]), is_target) < 0.3

    # Mean log-spectrum cosine over every pair of the corpus (more pairs, steadier estimate).
    utts = sorted(audio)
    emb = np.array([mean_log_spectrum(audio[u], sr) for u in utts])
    emb -= emb.mean(0)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spk = np.array([u.split("-")[0] for u in utts])
    upper = np.triu_indices(len(utts), 1)
    assert eer((emb @ emb.T)[upper], (spk[:, None] == spk[None, :])[upper]) < 0.42

    level = {u: 20 * np.log10(np.sqrt(np.mean(x ** 2))) for u, x in audio.items()}
    assert eer(np.array([-abs(level[a] - level[b]) for a, b, _ in trials]), is_target) > 0.3
