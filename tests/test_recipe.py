"""The recipe end to end (./run.sh stages 0-6) on a tiny generated corpus, as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kaldiio
import pytest

from conftest import copy_recipe

# A small corpus and the TDNN of conf/tdnn_small.yaml: about a minute on 2 cores, and it learns.
TINY = ["--systems", "trained untrained", "--num-train-speakers", "16", "--num-test-speakers", "6", "--utts-per-speaker", "6", "--nj", "2",
        "--train-config", "conf/tdnn_small.yaml", "--exp-name", "tdnn_small",
        "--train-overrides", "train.max_epoch=8 data.batch_size=16 data.crop_frames=100"]


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory) -> Path:
    """A copy of the recipe code (outputs land in data/, features/, exp/ next to run.sh)."""
    return copy_recipe(tmp_path_factory.mktemp("recipe"))


def run_recipe(d: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(["./run.sh", *TINY, *args], cwd=d, env=env, capture_output=True, text=True, timeout=900)


def test_run_sh_help_lists_stages_and_settings(recipe_dir):
    proc = subprocess.run(["./run.sh", "--help"], cwd=recipe_dir, capture_output=True, text=True)
    assert proc.returncode == 0
    assert "0 data, 1 features, 2 train, 3 embeddings, 4 back-end, 5 score, 6 metrics" in proc.stdout
    assert "--num-train-speakers 100" in proc.stdout
    bad = subprocess.run(["./run.sh", "--no-such-setting", "1"], cwd=recipe_dir, capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown option --no-such-setting" in bad.stderr
    bad = subprocess.run(["./run.sh", "--systems", "trained ivector"], cwd=recipe_dir, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "unknown system 'ivector' in --systems (valid: trained untrained baseline pretrained)" in bad.stderr
    bad = subprocess.run(["./run.sh", "--systems", "baseline", "--baseline-feat-conf", ""], cwd=recipe_dir,
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "--systems has baseline but --baseline-feat-conf is empty" in bad.stderr


def test_recipe_end_to_end(recipe_dir):
    proc = run_recipe(recipe_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = recipe_dir
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        assert (d / "data/train" / name).is_file() and (d / "data/test" / name).is_file()
    stores = sorted((d / "features").glob("fbank_*/*/feats.h5"))
    assert [p.parent.name for p in stores] == ["test", "train"]
    manifest = json.loads((stores[1].parent / "manifest.json").read_text())
    assert manifest["num_utts"] == 96 and manifest["dim"] == 80
    exp = d / "exp/tdnn_small"
    assert len((exp / "metrics.tsv").read_text().splitlines()) == 9
    xv = dict(kaldiio.load_scp(str(exp / "embeddings/test/xvector.scp")).items())
    assert len(xv) == 36 and next(iter(xv.values())).shape == (128,)
    trials = (d / "data/test/trials").read_text().splitlines()
    for tag in ("cosine_none", "cosine_asnorm", "plda_none", "plda_asnorm"):
        scores = (exp / "scores/trials" / tag / "scores.txt").read_text().splitlines()
        assert [s.split()[:2] for s in scores] == [t.split()[:2] for t in trials]
        for system in (exp, exp / "untrained"):
            m = json.loads((system / "results/trials" / tag / "metrics.json").read_text())
            assert set(m["min_dcf"]) == {"0.01", "0.05"} and m["num_target"] == m["num_nontarget"] == 90
            assert (system / "results/trials" / tag / "det.png").stat().st_size > 1000
    # the network learns: 22 % EER against 44 % at its random initialisation (measured)
    eer = {system: json.loads((system / "results/trials/cosine_none/metrics.json").read_text())["eer"]
           for system in (exp, exp / "untrained")}
    assert eer[exp] < eer[exp / "untrained"] - 10, eer
    # the README's verify lines, on this run's model: first and last test files are different speakers
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    lines = [line.split("#")[0].strip() for line in readme.splitlines()
             if line.startswith("a=$(awk") or line.startswith("pyspeaker verify --model exp/tdnn/")]
    assert len(lines) == 2, lines
    script = "\n".join(lines).replace("exp/tdnn/", "exp/tdnn_small/")
    verify = subprocess.run(["bash", "-c", script], cwd=d, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    score, decision = verify.stdout.split()
    assert decision in ("target", "nontarget") and -1 <= float(score) <= 1
    table = proc.stdout.splitlines()
    assert "EER (%)" in table[0] and len(table) == 1 + 8  # header + (2 systems x 2 back-ends x 2 norms)
    assert sum(line.startswith("untrained") for line in table) == 4
    assert (exp / "RESULTS.md").read_text().count("| trained") == 4

    # A second run finds every stage complete and recomputes nothing.
    mtime = (exp / "checkpoints/final.pt").stat().st_mtime_ns
    again = run_recipe(recipe_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage 0: data/ is up to date, skipping" in again.stderr
    assert "is up to date with data/train; skipping" in again.stderr
    assert "stage 2: exp/tdnn_small is trained with these settings, skipping" in again.stderr
    assert (exp / "checkpoints/final.pt").stat().st_mtime_ns == mtime
    assert again.stdout == proc.stdout
    for stage, path in ((3, "embeddings/test"), (4, "backend/plda"), (5, "scores/trials/plda_asnorm"),
                        (6, "results/trials/plda_asnorm")):
        assert f"stage {stage}: {exp.relative_to(d)}/{path} is up to date, skipping" in again.stderr
    assert "stage 5: scoring" not in again.stderr and "stage 6: metrics of" not in again.stderr

    # A changed test set (one utterance fewer) gets new features and new embeddings, not stale ones.
    test = d / "data/test"
    gone = (test / "utt2spk").read_text().split()[0]
    for name in ("wav.scp", "utt2spk", "utt2dur"):
        lines = (test / name).read_text().splitlines()
        (test / name).write_text("".join(line + "\n" for line in lines if line.split()[0] != gone))
    (test / "spk2utt").write_text("".join(" ".join(u for u in line.split() if u != gone) + "\n"
                                          for line in (test / "spk2utt").read_text().splitlines()))
    (test / "trials").write_text("".join(line + "\n" for line in trials if gone not in line.split()[:2]))
    third = run_recipe(recipe_dir, "--stage", "1")
    assert third.returncode == 0, third.stderr[-3000:]
    xv = dict(kaldiio.load_scp(str(exp / "embeddings/test/xvector.scp")).items())
    assert len(xv) == 35 and gone not in xv
    assert "stage 4: " + str((exp / "backend/plda").relative_to(d)) + " is up to date, skipping" in third.stderr


def test_waveform_front_end_config_runs_the_recipe_from_audio(tmp_path):
    """conf/resnet34v2_softmaxproto.yaml (voxceleb_trainer's waveform front-end) through stages 0-6:
    --train-from audio trains on the data dir and embeds each set from its audio."""
    d = copy_recipe(tmp_path)
    args = ["--num-train-speakers", "6", "--num-test-speakers", "4", "--utts-per-speaker", "4", "--nj", "2",
            "--train-from", "audio", "--train-config", "conf/resnet34v2_softmaxproto.yaml", "--exp-name", "wave",
            "--backends", "cosine", "--score-norms", "none", "--train-overrides",
            "train.max_epoch=1 data.batch_size=6 data.crop_frames=50 model.nOut=32 data.num_workers=0 model.n_mels=32"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(["./run.sh", *args], cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = d / "exp/wave"
    assert "reads data/train with conf/resnet34v2_softmaxproto.yaml" in proc.stderr
    for system in (exp, exp / "untrained"):
        xv = dict(kaldiio.load_scp(str(system / "embeddings/test/xvector.scp")).items())
        assert len(xv) == 16 and next(iter(xv.values())).shape == (32,)
        m = json.loads((system / "results/trials/cosine_none/metrics.json").read_text())
        assert m["num_target"] + m["num_nontarget"] == 48
    again = subprocess.run(["./run.sh", *args], cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "stage 2: exp/wave is trained with these settings, skipping" in again.stderr
    assert "stage 3: exp/wave/embeddings/test is up to date, skipping" in again.stderr
    bad = subprocess.run(["./run.sh", "--train-from", "store"], cwd=d, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "--train-from must be features or audio, not 'store'" in bad.stderr


def test_pretrained_system_runs_stages_3_to_6_on_an_imported_model(tmp_path):
    """--systems pretrained --pretrained DIR: an import-model dir (Resemblyzer's shipped weights) embeds the
    data dirs' audio (resampled to its 16 kHz), with back-ends and scoring as for a trained system."""
    pytest.importorskip("resemblyzer", reason="resemblyzer (test-only, ships pretrained.pt) is not installed")
    import numpy as np

    import pyspeaker
    from conftest import run_cli

    d = copy_recipe(tmp_path / "r")
    model = tmp_path / "models" / "resemblyzer"
    run_cli("import-model", "--from", "resemblyzer", "--out", model, check=True)
    args = ["--num-train-speakers", "6", "--num-test-speakers", "4", "--utts-per-speaker", "4", "--nj", "2",
            "--systems", "pretrained", "--pretrained", str(model), "--exp-name", "pre",
            "--backends", "cosine plda", "--score-norms", "none"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(["./run.sh", *args], cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage 1" not in proc.stderr and "stage 2" not in proc.stderr  # no features, no training
    system = d / "exp/pre/pretrained"
    xv = dict(kaldiio.load_scp(str(system / "embeddings/test/xvector.scp")).items())
    assert len(xv) == 16 and next(iter(xv.values())).shape == (256,)
    utt = sorted(xv)[0]
    wav = next(line.split(maxsplit=1)[1] for line in (d / "data/test/wav.scp").read_text().splitlines()
               if line.split()[0] == utt)
    assert np.abs(xv[utt] - pyspeaker.load_model(model, device="cpu").embed(wav.strip())).max() <= 1e-5
    for be in ("cosine", "plda"):
        m = json.loads((system / f"results/trials/{be}_none/metrics.json").read_text())
        assert m["num_target"] + m["num_nontarget"] == 48 and 0 <= m["eer"] <= 100
    assert "pretrained" in (d / "exp/pre/RESULTS.md").read_text()
    bad = subprocess.run(["./run.sh", "--systems", "pretrained"], cwd=d, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "--systems has pretrained but --pretrained is empty" in bad.stderr
