"""Stage 1 end to end: real WAV data dir -> HDF5 store (+ Kaldi ark), jobs, reuse, errors."""
from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf

from pyspeaker.features import FeatureExtractor, load_feature_config
from pyspeaker.store import FeatureStore

from conftest import REPO, run_cli

FBANK = str(REPO / "conf" / "fbank.conf")


def make_data_dir(root: Path, n_spk=2, n_utt=3, rate=16000) -> Path:
    rng = np.random.default_rng(0)
    d = root / "data" / "set1"
    (root / "wav").mkdir(parents=True)
    d.mkdir(parents=True)
    wav, u2s = [], []
    for s in range(n_spk):
        for u in range(n_utt):
            utt = f"s{s}-u{u}"
            t = np.arange(int(rate * (0.5 + 0.25 * u))) / rate
            x = 0.3 * np.sin(2 * np.pi * (150 + 40 * s) * t) + 0.01 * rng.normal(size=t.size)
            path = root / "wav" / f"{utt}.wav"
            sf.write(path, x, rate, subtype="PCM_16")
            wav.append(f"{utt} {path}\n")
            u2s.append(f"{utt} s{s}\n")
    (d / "wav.scp").write_text("".join(wav))
    (d / "utt2spk").write_text("".join(u2s))
    (d / "spk2utt").write_text("".join(f"s{s} " + " ".join(f"s{s}-u{u}" for u in range(n_utt)) + "\n"
                                       for s in range(n_spk)))
    return d


def test_store_matches_extractor_and_jobs_and_ark(tmp_path):
    d = make_data_dir(tmp_path)
    root1, root2 = tmp_path / "f1", tmp_path / "f2"
    p1 = run_cli("make-features", "--data-dir", d, "--conf", FBANK, "--features-root", root1, check=True)
    p2 = run_cli("make-features", "--data-dir", d, "--conf", FBANK, "--features-root", root2, "--nj", "2",
                 "--format", "ark", check=True)
    s1, s2 = FeatureStore(p1.stdout.strip()), FeatureStore(p2.stdout.strip())
    assert Path(p1.stdout.strip()).name == "set1" and Path(p1.stdout.strip()).parent.name.startswith("fbank_")
    assert s1.ids == s2.ids == sorted(s1.ids) and len(s1) == 6 and s1.dim == 80
    ext = FeatureExtractor(load_feature_config(FBANK))
    wav = dict(line.split() for line in (d / "wav.scp").read_text().splitlines())
    for utt in s1.ids:
        x, rate = sf.read(wav[utt], dtype="float32")
        np.testing.assert_array_equal(s1[utt], ext(x, rate))
        np.testing.assert_array_equal(s2[utt], s1[utt])
    ark = dict(kaldiio.load_scp(str(Path(p2.stdout.strip()) / "feats.scp")).items())
    assert sorted(ark) == s1.ids
    np.testing.assert_array_equal(ark["s1-u2"], s1["s1-u2"])
    logs = sorted((root2 / s2.feat_id / "log").glob("make_features.set1.*.log"))
    assert [p.name for p in logs] == ["make_features.set1.1.log", "make_features.set1.2.log"]
    assert "exit code 0" in logs[0].read_text()
    m = json.loads((Path(p1.stdout.strip()) / "manifest.json").read_text())
    assert m["num_utts"] == 6 and m["dim"] == 80 and m["config"]["num_mel_bins"] == 80
    assert (Path(p1.stdout.strip()) / "utt2spk").read_text() == (d / "utt2spk").read_text()


def test_reuse_and_invalidation(tmp_path):
    d = make_data_dir(tmp_path)
    args = ["make-features", "--data-dir", d, "--conf", FBANK, "--features-root", tmp_path / "f"]
    first = run_cli(*args, check=True).stdout.strip()
    again = run_cli(*args, check=True)
    assert again.stdout.strip() == first and "is up to date" in again.stderr
    other = run_cli(*args, "--cmn", "utterance", check=True).stdout.strip()
    assert other != first  # a changed option gets its own store
    np.testing.assert_allclose(FeatureStore(other)["s0-u0"].mean(axis=0), 0, atol=1e-4)
    # The data dir loses an utterance: the store no longer matches its manifest and is recomputed.
    for name in ("wav.scp", "utt2spk"):
        (d / name).write_text("".join(f"{x}\n" for x in (d / name).read_text().splitlines()[:-1]))
    (d / "spk2utt").write_text("s0 s0-u0 s0-u1 s0-u2\ns1 s1-u0 s1-u1\n")
    changed = run_cli(*args, check=True)
    assert "computing" in changed.stderr and len(FeatureStore(first)) == 5


def test_bad_audio_fails_cleanly_and_keeps_previous_store(tmp_path):
    d = make_data_dir(tmp_path)
    args = ["make-features", "--data-dir", d, "--conf", FBANK, "--features-root", tmp_path / "f"]
    store = Path(run_cli(*args, check=True).stdout.strip())
    before = (store / "feats.h5").read_bytes()
    bad_wav = tmp_path / "wav" / "s1-u1.wav"
    sf.write(bad_wav, np.zeros(8000), 8000, subtype="PCM_16")  # wrong sample rate
    for nj in ("1", "2"):
        proc = run_cli(*args, "--force", "--nj", nj)
        assert proc.returncode == 1
        if nj == "1":
            assert "wav.scp:5: sample rate 8000 Hz" in proc.stderr.splitlines()[-1]
        else:
            assert "1 of 2 jobs failed" in proc.stderr and "wav.scp:5: sample rate 8000 Hz" in proc.stderr
        assert (store / "feats.h5").read_bytes() == before
        assert [p.name for p in store.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_missing_data_dir_file_is_one_clear_error(tmp_path):
    d = make_data_dir(tmp_path)
    (d / "utt2spk").unlink()
    proc = run_cli("make-features", "--data-dir", d, "--conf", FBANK, "--features-root", tmp_path / "f")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "utt2spk" in proc.stderr
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").rglob("feats.h5"))
