"""./run.sh --recipe datadir: the user's own Kaldi data dirs, anywhere, never written to; and no
recipe's stage 0 replaces a data dir it did not make."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SHARED, copy_recipe, run_local

FSDD = SHARED / "corpora" / "fsdd"
QUICK = ["--train-overrides", "train.max_epoch=2 data.batch_size=16 data.crop_frames=40", "--nj", "2",
         "--backends", "cosine", "--score-norms", "none"]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_sh(d: Path, *args, timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(["./run.sh", *map(str, args)], cwd=d, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"{FSDD} is missing (../shared not beside the repo)")
def test_fsdd_data_dirs_from_outside_data(tmp_path):
    """FSDD's data dirs written by local/prepare_fsdd.py into a folder of the user's, trained and scored
    through the datadir recipe; the user's folder is byte-identical afterwards. The closed protocol's
    test speakers are its training speakers: allowed here with --allow-shared-speakers."""
    mine = tmp_path / "my_corpus"
    run_local("local/prepare_fsdd.py", "--fsdd-dir", FSDD, "--out", mine, "--max-reps", "6",
              "--heldout-reps", "0 1", check=True)
    before = tree_digest(mine)
    d = copy_recipe(tmp_path / "recipe")
    args = ["--recipe", "datadir", "--train-dir", mine / "fsdd_closed_train", "--test-dir", mine / "fsdd_closed_test",
            "--trials", mine / "fsdd_closed_test" / "trials", "--allow-shared-speakers", "true",
            "--feat-conf", "conf/fbank_8k.conf",
            "--baseline-feat-conf", "conf/mfcc_8k.conf", *QUICK]
    proc = run_sh(d, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tree_digest(mine) == before  # nothing the user owns was written
    assert "6 speakers of" in proc.stderr and "also speak in" in proc.stderr  # the closed set: warned, not refused
    links = sorted(p for p in (d / "data").iterdir() if p.is_symlink())
    assert [p.name.rsplit("_", 1)[0] for p in links] == ["fsdd_closed_test", "fsdd_closed_train"]
    assert {Path(os.readlink(p)) for p in links} == {mine / "fsdd_closed_train", mine / "fsdd_closed_test"}
    exp = d / "exp/datadir_tdnn"
    for system in (exp, exp / "baseline"):
        m = json.loads((system / "results/trials/cosine_none/metrics.json").read_text())
        # 6 speakers x 10 digits x 2 held-out repetitions: every pair of the 120 test files
        assert m["num_target"] + m["num_nontarget"] == 120 * 119 // 2 and 0 <= m["eer"] < 50
    again = run_sh(d, *args)
    assert again.returncode == 0 and "stage 0: data/ is up to date, skipping" in again.stderr
    assert tree_digest(mine) == before


def test_default_corpus_as_your_own_data_and_the_refusals(tmp_path):
    """The generated corpus written outside the recipe (a user's dirs), run with an enroll dir of its
    own; then the default recipe's stage 0 refuses to replace a data/train it did not make."""
    corpus = tmp_path / "corpus"
    run_local("local/prepare_mini.py", "--audio-dir", corpus / "audio", "--data-dir", corpus, "--seed", "3",
              "--num-train-speakers", "8", "--num-test-speakers", "4", "--utts-per-speaker", "4", check=True)
    # enroll on each test speaker's first utterance (its own data dir), test on the rest
    test = corpus / "test"
    utt2spk = [line.split() for line in (test / "utt2spk").read_text().splitlines()]
    wav = dict(line.split(maxsplit=1) for line in (test / "wav.scp").read_text().splitlines())
    firsts = {}
    for utt, spk in utt2spk:
        firsts.setdefault(spk, utt)
    enroll = corpus / "enroll"
    enroll.mkdir()
    (enroll / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u in sorted(firsts.values())))
    (enroll / "utt2spk").write_text("".join(f"{u} {s}\n" for s, u in sorted(firsts.items(), key=lambda x: x[1])))
    (enroll / "spk2utt").write_text("".join(f"{s} {u}\n" for s, u in sorted(firsts.items())))
    trials = tmp_path / "trials.txt"
    trials.write_text("".join(f"{firsts[s2]} {u} {'target' if s == s2 else 'nontarget'}\n"
                              for u, s in utt2spk if u not in firsts.values() for s2 in sorted(firsts)))
    before = tree_digest(corpus)
    d = copy_recipe(tmp_path / "recipe")
    proc = run_sh(d, "--recipe", "datadir", "--train-dir", corpus / "train", "--test-dir", test,
                  "--enroll-dir", enroll, "--trials", trials, "--systems", "trained", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tree_digest(corpus) == before
    m = json.loads((d / "exp/datadir_tdnn/results/trials.txt/cosine_none/metrics.json").read_text())
    assert (m["num_target"], m["num_nontarget"]) == (12, 36)
    assert (d / "exp/datadir_tdnn/embeddings" / next(p.name for p in (d / "data").iterdir()
                                                      if p.name.startswith("enroll_")) / "xvector.scp").is_file()

    missing = run_sh(d, "--recipe", "datadir", "--train-dir", corpus / "train")
    assert missing.returncode == 1 and "give your data: --train-dir DIR --test-dir DIR --trials FILE" in missing.stderr

    # a data/train the default recipe did not make (the user's, or a link) is never replaced
    (d / "data/train").mkdir(parents=True)
    (d / "data/train/wav.scp").write_text("mine /somewhere/a.wav\n")
    refused = run_sh(d, "--num-train-speakers", "4", "--num-test-speakers", "2", "--utts-per-speaker", "2",
                     "--stop-stage", "0")
    assert refused.returncode == 1
    assert "data/train exists and was not made by stage 0 of recipe 'mini': refusing to replace it" in refused.stderr
    assert (d / "data/train/wav.scp").read_text() == "mine /somewhere/a.wav\n"
