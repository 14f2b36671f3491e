"""--valid-speakers: held-out speakers (pyspeaker split-valid), validation per epoch, calibration and
fusion (stage 7); and the datadir recipe's refusals of bad input before any training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import copy_recipe, run_cli, run_local
from test_datadir_recipe import run_sh, tree_digest

QUICK = ["--train-overrides", "train.max_epoch=2 data.batch_size=16 data.crop_frames=40", "--nj", "2",
         "--backends", "cosine", "--score-norms", "none", "--systems", "trained baseline"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """8 training speakers x 4 utterances, 4 test speakers (local/prepare_mini.py), outside any recipe."""
    root = tmp_path_factory.mktemp("corpus")
    run_local("local/prepare_mini.py", "--audio-dir", root / "audio", "--data-dir", root, "--seed", "3",
              "--num-train-speakers", "8", "--num-test-speakers", "4", "--utts-per-speaker", "4", check=True)
    return root


def _utt2spk(d: Path) -> dict[str, str]:
    return dict(line.split() for line in (d / "utt2spk").read_text().splitlines())


def test_split_valid_is_seeded_speaker_disjoint_and_covers_the_set(corpus, tmp_path):
    train = _utt2spk(corpus / "train")
    args = ["split-valid", "--data-dir", corpus / "train", "--num-speakers", "3", "--seed", "5"]
    run_cli(*args, "--valid-out", tmp_path / "v", "--train-out", tmp_path / "s", check=True)
    run_cli(*args, "--valid-out", tmp_path / "v2", "--train-out", tmp_path / "s2", check=True)
    valid, sub = _utt2spk(tmp_path / "v"), _utt2spk(tmp_path / "s")
    assert len(set(valid.values())) == 3 and len(set(sub.values())) == 5
    assert not set(valid.values()) & set(sub.values()) and {**valid, **sub} == train
    assert tree_digest(tmp_path / "v") == tree_digest(tmp_path / "v2")   # deterministic
    trials = [line.split() for line in (tmp_path / "v/trials").read_text().splitlines()]
    assert len(trials) == 12 * 11 // 2 and sum(t[2] == "target" for t in trials) == 3 * 6
    assert all((valid[a] == valid[b]) == (label == "target") for a, b, label in trials)
    capped = run_cli(*args, "--max-trials", "20", "--valid-out", tmp_path / "v3", "--train-out", tmp_path / "s3")
    assert capped.returncode == 0, capped.stderr
    trials = [line.split() for line in (tmp_path / "v3/trials").read_text().splitlines()]
    assert len(trials) == 20 and sum(t[2] == "target" for t in trials) == 10
    too_many = run_cli("split-valid", "--data-dir", corpus / "train", "--num-speakers", "7",
                       "--valid-out", tmp_path / "v4", "--train-out", tmp_path / "s4")
    assert too_many.returncode == 1 and not (tmp_path / "v4").exists()
    assert too_many.stderr.strip().splitlines()[-1] == (
        f"error: {corpus / 'train' / 'utt2spk'}: --valid-speakers 7: the training set has 8 speakers and at "
        f"least 2 must stay for training (at most 6)")


def test_split_valid_utterances_holds_out_n_of_every_speaker(corpus, tmp_path):
    """Closed-set validation: 2 of every speaker's 4 utterances held out, the speakers kept in training."""
    train = _utt2spk(corpus / "train")
    args = ["split-valid", "--data-dir", corpus / "train", "--num-utterances", "2", "--seed", "1"]
    run_cli(*args, "--valid-out", tmp_path / "v", "--train-out", tmp_path / "s", check=True)
    valid, sub = _utt2spk(tmp_path / "v"), _utt2spk(tmp_path / "s")
    assert not set(valid) & set(sub) and {**valid, **sub} == train   # utterance-disjoint, covering
    assert set(valid.values()) == set(sub.values()) == set(train.values())
    assert all(list(valid.values()).count(spk) == 2 for spk in set(train.values()))
    trials = [line.split() for line in (tmp_path / "v/trials").read_text().splitlines()]
    assert len(trials) == 16 * 15 // 2 and sum(t[2] == "target" for t in trials) == 8
    assert all((valid[a] == valid[b]) == (label == "target") for a, b, label in trials)
    for extra, message in ((["--num-utterances", "4"], "utt2spk: --valid-utterances 4: speaker "),
                           (["--num-utterances", "1"], "must be at least 2 (a target trial is a pair of them), got 1"),
                           (["--num-utterances", "2", "--num-speakers", "2"], "give exactly one of")):
        bad = run_cli("split-valid", "--data-dir", corpus / "train", *extra,
                      "--valid-out", tmp_path / "vx", "--train-out", tmp_path / "sx")
        assert bad.returncode == 1 and not (tmp_path / "vx").exists() and not (tmp_path / "sx").exists()
        assert message in bad.stderr.strip().splitlines()[-1], bad.stderr
        if extra[1] == "4":
            assert bad.stderr.strip().endswith("has 4 utterances and needs at least 5 (4 held out, 1 left to train "
                                               "on); 8 of 8 speakers have too few"), bad.stderr


def test_datadir_bad_input_is_one_line_before_training(corpus, tmp_path):
    d = copy_recipe(tmp_path / "recipe")
    base = ["--recipe", "datadir", "--train-dir", corpus / "train", "--test-dir", corpus / "test", *QUICK]
    # a trial naming an utterance of neither the test nor the enroll dir
    lines = (corpus / "test/trials").read_text().splitlines()
    bad = tmp_path / "bad_trials"
    bad.write_text("\n".join(lines[:3] + [lines[3].split()[0] + " nobody_0001 nontarget"] + lines[4:]) + "\n")
    proc = run_sh(d, *base, "--trials", bad)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}:4: test utterance 'nobody_0001' of trial '{lines[3].split()[0]} nobody_0001' "
                      f"is not in {corpus / 'test'} (1 trials name utterances not in the data dirs)"]
    assert not (d / "exp").exists()
    # train and test sharing speakers: refused, unless --allow-shared-speakers true
    utts = sorted(_utt2spk(corpus / "train").items())
    train_trials = tmp_path / "train_trials"
    train_trials.write_text("".join(f"{a} {b} {'target' if s == t else 'nontarget'}\n"
                                    for a, s in utts[:4] for b, t in utts[4:12]))
    shared = ["--recipe", "datadir", "--train-dir", corpus / "train", "--test-dir", corpus / "train",
              "--trials", train_trials, *QUICK, "--stop-stage", "0"]
    proc = run_sh(d, *shared)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [
        f"error: {corpus / 'train/utt2spk'}: 8 speakers of {corpus / 'train'} also speak in {corpus / 'train'} "
        f"(first: {utts[0][1]}): the test would measure training speakers (give --allow-shared-speakers true to "
        f"run anyway)"]
    proc = run_sh(d, *shared, "--allow-shared-speakers", "true")
    assert proc.returncode == 0 and "running anyway (--allow-shared-speakers)" in proc.stderr, proc.stderr[-2000:]
    # --valid-speakers too large: one line before any training
    proc = run_sh(d, *base, "--trials", corpus / "test/trials", "--valid-speakers", "7")
    assert proc.returncode == 1 and "at least 2 must stay for training (at most 6)" in proc.stderr
    assert not (d / "exp").exists()
    # augmentation of waveforms needs training from audio
    proc = run_sh(d, *base, "--trials", corpus / "test/trials", "--noise-dir", corpus / "audio")
    assert proc.returncode == 1 and proc.stderr.strip().endswith(
        "ERROR: --noise-dir/--rir-dir augment the waveforms: they need --train-from audio (now 'features')")


def test_datadir_recipe_with_validation_calibration_and_fusion(corpus, tmp_path):
    before = tree_digest(corpus)
    d = copy_recipe(tmp_path / "recipe")
    proc = run_sh(d, "--recipe", "datadir", "--train-dir", corpus / "train", "--test-dir", corpus / "test",
                  "--trials", corpus / "test/trials", "--valid-speakers", "2", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tree_digest(corpus) == before   # the user's dirs are byte-identical
    train_name = next(p.name for p in (d / "data").iterdir() if p.is_symlink() and p.name.startswith("train_"))
    valid, sub = d / "data" / f"{train_name}_valid", d / "data" / f"{train_name}_sub"
    assert not valid.is_symlink() and not sub.is_symlink()
    v, s = _utt2spk(valid), _utt2spk(sub)
    assert len(set(v.values())) == 2 and len(set(s.values())) == 6 and not set(v.values()) & set(s.values())
    assert {**v, **s} == _utt2spk(corpus / "train")
    assert len((valid / "trials").read_text().splitlines()) == 8 * 7 // 2
    exp = d / "exp/datadir_tdnn"
    rows = (exp / "metrics.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    assert "valid_eer" in header and len(rows) == 3
    assert all(0 <= float(r.split("\t")[header.index("valid_eer")]) <= 100 for r in rows[1:])
    for system in (exp, exp / "baseline", exp / "fusion"):
        name = "cosine_none" if system.name == "fusion" else "cosine_none_cal"
        m = json.loads((system / "results/trials" / name / "metrics.json").read_text())
        assert m["calibrated"] and 0 <= m["eer"] <= 100 and m["cllr"] > 0 and set(m["act_dcf"]) == {"0.01", "0.05"}
    fusion = json.loads((exp / "fusion/calibration/cosine_none/fusion.json").read_text())
    assert fusion["systems"] == ["trained", "baseline"] and fusion["trials"] == f"data/{valid.name}/trials"
    assert fusion["num_target"] + fusion["num_nontarget"] == 28
    table = (exp / "RESULTS.md").read_text()
    assert "actDCF (p_target=0.01)" in table and "| fusion |" in table and "| baseline |" in table
    assert "system" in proc.stdout and "fusion" in proc.stdout
    # the best system is picked on the validation metrics (the fusion's out of fold), never the test trials'
    valid_m = {name: json.loads((system / "results" / valid.name / "cosine_none/metrics.json").read_text())
               for name, system in (("trained", exp), ("baseline", exp / "baseline"), ("fusion", exp / "fusion"))}
    assert json.loads((exp / f"fusion/scores/{valid.name}/cosine_none/scores.json").read_text())[
        "cross_validated_folds"] == 5
    best = min(valid_m, key=lambda n: (valid_m[n]["min_dcf"]["0.01"], valid_m[n]["eer"]))
    marked = [line.split("|")[1].strip() for line in table.splitlines() if line.rstrip().endswith("| * |")]
    assert marked == [best], table
    assert "selected (*) on the validation trials, not the test trials: " + best in proc.stdout


def test_default_recipe_stage_0_with_validation_speakers(tmp_path):
    """A recipe that writes its own data dirs: stage 0 makes data/train (validated, recorded as its own),
    then holds out the validation speakers from it; a second run skips both."""
    d = copy_recipe(tmp_path / "r")
    args = ["--num-train-speakers", "6", "--num-test-speakers", "2", "--utts-per-speaker", "3",
            "--valid-speakers", "2", "--stop-stage", "0"]
    proc = run_sh(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (d / "data/.made_by/train").read_text().strip() == "mini"
    spk = lambda name: {line.split()[1] for line in (d / "data" / name / "utt2spk").read_text().splitlines()}
    assert len(spk("train_valid")) == 2 and len(spk("train_sub")) == 4
    assert spk("train_valid") | spk("train_sub") == spk("train") and not spk("train_valid") & spk("train_sub")
    again = run_sh(d, *args)
    assert again.returncode == 0 and "data/train_valid and data/train_sub are up to date, skipping" in again.stderr
    # --valid-utterances instead: 2 utterances of each of the 6 speakers, the earlier split replaced
    utts = ["--valid-speakers", "0", "--valid-utterances", "2"]
    proc = run_sh(d, *args, *utts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "holding out 2 utterances of every speaker of data/train" in proc.stderr
    valid = [line.split()[1] for line in (d / "data/train_valid/utt2spk").read_text().splitlines()]
    assert sorted(set(valid)) == sorted(spk("train")) and all(valid.count(s) == 2 for s in set(valid))
    assert spk("train_sub") == spk("train") and len(valid) == 12
    both = run_sh(d, *args, "--valid-utterances", "2")
    assert both.returncode == 1 and both.stderr.strip().endswith(
        "--valid-speakers 2 and --valid-utterances 2: hold out speakers or utterances, not both")
    # more utterances than a speaker has: one line naming utt2spk, and the earlier split stays as it was
    before = tree_digest(d / "data/train_valid"), tree_digest(d / "data/train_sub")
    too_many = run_sh(d, *args, "--valid-speakers", "0", "--valid-utterances", "3")
    errors = [line for line in too_many.stderr.splitlines() if line.startswith("error:")]
    assert too_many.returncode == 1 and len(errors) == 1 and errors[0].startswith(
        "error: data/train/utt2spk: --valid-utterances 3: speaker ") and errors[0].endswith(
        "has 3 utterances and needs at least 4 (3 held out, 1 left to train on); 6 of 6 speakers have too few")
    assert (tree_digest(d / "data/train_valid"), tree_digest(d / "data/train_sub")) == before
