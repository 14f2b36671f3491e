"""The bad-input table: every command, given a bad input or an output that is one of its inputs,
answers with one ``error:`` line naming the file and the problem, a non-zero exit, no traceback,
and leaves every earlier output byte for byte as it was.

One real set-up is built once (WAV data dir -> feature store -> a 1-epoch TDNN -> embeddings ->
back-ends -> scores -> metrics) with the CLI itself; each case then breaks one thing in a scratch
folder of its own, or points an output at an input, and runs one command.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from conftest import FBANK, TINY_TDNN_TRAIN, run_cli, run_local, write_tone_data_dir

@dataclass
class World:
    root: Path
    data: Path
    store: Path
    exp: Path
    ckpt: Path
    emb: Path
    cosine: Path
    plda: Path
    trials: Path
    scores: Path
    metrics: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    data = write_tone_data_dir(root / "data" / "train", root / "wav")
    store = Path(run_cli("make-features", "--data-dir", data, "--conf", FBANK, "--features-root", root / "features",
                         check=True).stdout.strip())
    exp = root / "exp"
    run_cli("train", "--features", store, "--exp-dir", exp, *TINY_TDNN_TRAIN, check=True)
    ckpt = exp / "checkpoints" / "final.pt"
    emb = root / "emb"
    run_cli("extract", "--checkpoint", ckpt, "--features", store, "--out", emb, "--threads", "1", check=True)
    cosine, plda = root / "backend_cosine", root / "backend_plda"
    run_cli("train-backend", "--embeddings", emb, "--out", cosine, check=True)
    run_cli("train-backend", "--embeddings", emb, "--out", plda, "--backend", "plda", "--lda-dim", "2", check=True)
    utts = [f"s{s}-u{u}" for s in range(3) for u in range(4)]
    trials = root / "trials"
    trials.write_text("".join(f"{a} {b} {'target' if a[:2] == b[:2] else 'nontarget'}\n"
                              for i, a in enumerate(utts) for b in utts[i + 1:]))
    scores = root / "scores" / "scores.txt"
    run_cli("score", "--embeddings", emb, "--trials", trials, "--out", scores, "--backend-dir", cosine, check=True)
    metrics = root / "results" / "metrics.json"
    run_cli("compute-metrics", "--scores", scores, "--trials", trials, "--out", metrics, check=True)
    return World(root, data, store, exp, ckpt, emb, cosine, plda, trials, scores, metrics)


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file under ``root`` (but the case's scratch folder) with its sha1."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and skip not in p.parents:
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    return dst


def _data_with_audio(w: World, s: Path, index: int, audio: Path) -> Path:
    """A copy of the data dir whose wav.scp line ``index`` (0-based) points to ``audio``."""
    d = _copy(w.data, s / "data")
    lines = (d / "wav.scp").read_text().splitlines()
    lines[index] = f"{lines[index].split()[0]} {audio}"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    return d


def _nan_wav(w: World, s: Path) -> Path:
    x = np.zeros(8000, dtype=np.float32)
    x[100] = np.nan
    sf.write(s / "nan.wav", x, 16000, subtype="FLOAT")
    return _data_with_audio(w, s, 2, s / "nan.wav")


def _bad_spk2utt(w: World, s: Path) -> Path:
    """A data dir with a complete store, whose spk2utt then stops agreeing with utt2spk: the store
    must not be reported up to date."""
    d = _copy(w.data, s / "data")
    run_cli("make-features", "--data-dir", d, "--conf", FBANK, "--features-root", s / "f", check=True)
    text = (d / "spk2utt").read_text().replace("s0-u3", "s1-u0", 1)
    (d / "spk2utt").write_text(text)
    return d


def _truncated(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    return dst


def _truncated_store(w: World, s: Path) -> Path:
    store = _copy(w.store, s / "store")
    _truncated(w.store / "feats.h5", store / "feats.h5")
    return store


def _nan_embeddings(w: World, s: Path) -> Path:
    from conftest import write_embedding_dir
    from pyspeaker.store.embeddings import load_embeddings

    ids, x = load_embeddings(w.emb)
    x = x.copy()
    x[5, 3] = np.nan
    return write_embedding_dir(s / "emb", ids, x, labels=[u[:2] for u in ids])


def _scp_without_ark(w: World, s: Path) -> Path:
    d = s / "emb"
    d.mkdir()
    (d / "xvector.scp").write_text("".join(f"{u} {s / 'gone.ark'}:{10 + 20 * i}\n" for i, u in enumerate(["a", "b"])))
    return d / "xvector.scp"


def _other_dim_store(w: World, s: Path) -> Path:
    from conftest import make_speaker_store
    return make_speaker_store(s / "store", dim=17)


def _scores_with_nan(w: World, s: Path) -> Path:
    lines = w.scores.read_text().splitlines()
    a, b, _ = lines[3].split()
    lines[3] = f"{a} {b} nan"
    (s / "scores.txt").write_text("\n".join(lines) + "\n")
    return s / "scores.txt"


def _scores_missing_trial(w: World, s: Path) -> Path:
    lines = w.scores.read_text().splitlines()
    (s / "scores.txt").write_text("\n".join(lines[:-1]) + "\n")
    return s / "scores.txt"


def _trials_unknown_utt(w: World, s: Path) -> Path:
    lines = w.trials.read_text().splitlines()
    lines[4] = "s0-u0 nobody-u9 nontarget"
    (s / "trials").write_text("\n".join(lines) + "\n")
    return s / "trials"


def _vt_model(w: World, s: Path) -> Path:
    import torch
    torch.save({"__S__.conv1.weight": torch.zeros(2, 2), "__L__.W": torch.zeros(2, 2)}, s / "baseline_lite_ap.model")
    return s / "baseline_lite_ap.model"


def _conf_with(s: Path, line: str) -> Path:
    conf = s / "fbank.conf"
    conf.write_text(Path(FBANK).read_text() + line + "\n")
    return conf


def _wrong_dim_mean(w: World, s: Path) -> Path:
    np.save(s / "mean.npy", np.zeros(5, dtype=np.float32))
    return s / "mean.npy"


def _wrong_dim_backend(w: World, s: Path) -> Path:
    from conftest import write_embedding_dir
    ids = [f"x{i}" for i in range(12)]
    write_embedding_dir(s / "emb7", ids, np.random.default_rng(0).normal(size=(12, 7)), labels=[i[:2] for i in ids])
    run_cli("train-backend", "--embeddings", s / "emb7", "--out", s / "backend7", check=True)
    return s / "backend7"


def _store_at_print_path(w: World, s: Path) -> tuple[Path, Path]:
    root = s / "features"
    target = Path(run_cli("make-features", "--data-dir", w.data, "--conf", FBANK, "--features-root", root,
                          "--name", "here", "--print-path", check=True).stdout.strip())
    target.parent.mkdir(parents=True)
    _copy(w.data, target)
    return root, target


# (case id, argv builder (world, scratch) -> list, text the one error line must contain)
Case = tuple[str, Callable[[World, Path], list], str]
CASES: list[Case] = [
    # make-features / validate-data
    ("make-features: missing data dir", lambda w, s: ["make-features", "--data-dir", s / "nope", "--conf", FBANK,
                                                 "--features-root", s / "f"], "nope"),
    ("make-features: missing audio file", lambda w, s: ["make-features", "--data-dir", _missing_audio(w, s), "--conf",
                                                   FBANK, "--features-root", s / "f"], "wav.scp:1: audio file not found"),
    ("make-features: NaN samples", lambda w, s: ["make-features", "--data-dir", _nan_wav(w, s), "--conf", FBANK,
                                            "--features-root", s / "f"], "wav.scp:3: samples of audio"),
    ("make-features: NaN samples over a good store", lambda w, s: ["make-features", "--data-dir", _nan_wav_named(w, s),
                                                              "--conf", FBANK, "--features-root", w.root / "features",
                                                              "--name", "train", "--force"], "NaN"),
    ("make-features: spk2utt disagrees with utt2spk", lambda w, s: ["make-features", "--data-dir", _bad_spk2utt(w, s),
                                                               "--conf", FBANK, "--features-root", s / "f"], "spk2utt"),
    ("make-features: mistyped --conf", lambda w, s: ["make-features", "--data-dir", w.data, "--conf", s / "fbnk.conf",
                                                "--features-root", s / "f"], "fbnk.conf: feature config file not found"),
    ("make-features: NaN in a .conf value", lambda w, s: ["make-features", "--data-dir", w.data, "--conf",
                                                     _conf_with(s, "--dither=nan"), "--features-root", s / "f"],
     "fbank.conf:"),
    ("make-features: inf in a .conf value", lambda w, s: ["make-features", "--data-dir", w.data, "--conf",
                                                     _conf_with(s, "--low-freq=inf"), "--features-root", s / "f"],
     "not a finite number"),
    ("make-features: --nj 0", lambda w, s: ["make-features", "--data-dir", w.data, "--conf", FBANK, "--nj", "0",
                                       "--features-root", s / "f"], "--nj"),
    ("make-features: --cmd program missing", lambda w, s: ["make-features", "--data-dir", w.data, "--conf", FBANK,
                                                           "--nj", "2", "--cmd", "no-such-launcher -x",
                                                           "--features-root", s / "f"],
     "--cmd 'no-such-launcher -x': no-such-launcher not found on PATH"),
    ("make-features: wrong sample rate", lambda w, s: ["make-features", "--data-dir", _rate_8k(w, s), "--conf", FBANK,
                                                  "--features-root", s / "f"], "sample rate 8000 Hz"),
    ("make-features: corrupt audio", lambda w, s: ["make-features", "--data-dir", _corrupt_audio(w, s), "--conf", FBANK,
                                              "--features-root", s / "f"], "cannot decode audio"),
    ("make-features: store would replace the data dir", lambda w, s: ["make-features", "--data-dir",
                                                                 _store_at_print_path(w, s)[1], "--conf", FBANK,
                                                                 "--features-root", s / "features", "--name", "here"],
     "is the input --data-dir"),
    ("validate-data: NaN samples", lambda w, s: ["validate-data", _nan_wav(w, s)], "wav.scp:3: samples of audio"),
    ("validate-data: missing dir", lambda w, s: ["validate-data", s / "nope"], "nope"),
    # train
    ("train: --set unknown key", lambda w, s: ["train", "--features", w.store, "--exp-dir", s / "exp", *TINY_TDNN_TRAIN,
                                               "--set", "data.nosuch=1"], "--set data.nosuch=1: unknown setting"),
    ("train: --set bad value", lambda w, s: ["train", "--features", w.store, "--exp-dir", s / "exp", *TINY_TDNN_TRAIN,
                                             "--set", "optim.lr=-1"], "--set optim.lr=-1: optim.lr must be > 0"),
    ("train: missing config", lambda w, s: ["train", "--features", w.store, "--exp-dir", s / "exp",
                                            "--config", s / "nope.yaml"], "nope.yaml: config file not found"),
    ("train: exp dir is the store", lambda w, s: ["train", "--features", w.store, "--exp-dir", w.store, *TINY_TDNN_TRAIN],
     "is the input --features"),
    ("train: truncated feats.h5", lambda w, s: ["train", "--features", _truncated_store(w, s), "--exp-dir",
                                                s / "exp", *TINY_TDNN_TRAIN], "feats.h5: cannot read this feature store"),
    ("train: unknown model", lambda w, s: ["train", "--features", w.store, "--exp-dir", s / "exp", *TINY_TDNN_TRAIN,
                                           "--set", "model.name=Nope"], "--set model.name=Nope: unknown model 'Nope'"),
    # extract / extract-stats
    ("extract: --out is --features", lambda w, s: ["extract", "--checkpoint", w.ckpt, "--features", w.store,
                                                   "--out", w.store], "is the input --features"),
    ("extract: --out holds the checkpoint", lambda w, s: ["extract", "--checkpoint", w.ckpt, "--features", w.store,
                                                          "--out", w.exp], "contains the input --checkpoint"),
    ("extract: --out over the embeddings, store of another dim", lambda w, s: ["extract", "--checkpoint", w.ckpt,
                                                                               "--features", _other_dim_store(w, s),
                                                                               "--out", w.emb],
     "features of dim 17, but the model"),
    ("extract: not a checkpoint", lambda w, s: ["extract", "--checkpoint", _truncated(w.scores, s / "x.pt"),
                                                "--features", w.store, "--out", s / "e"], "x.pt: cannot read checkpoint"),
    ("extract: truncated feats.h5", lambda w, s: ["extract", "--checkpoint", w.ckpt, "--features",
                                                  _truncated_store(w, s), "--out", s / "e"], "feats.h5: cannot read"),
    ("extract: --nj 0", lambda w, s: ["extract", "--checkpoint", w.ckpt, "--features", w.store, "--out", s / "e",
                                      "--nj", "0"], "--nj"),
    ("extract: --cmd program missing", lambda w, s: ["extract", "--checkpoint", w.ckpt, "--features", w.store,
                                                     "--out", w.emb, "--nj", "2", "--cmd", "no-such-launcher -x"],
     "no-such-launcher"),
    ("extract-stats: --out is --features", lambda w, s: ["extract-stats", "--features", w.store, "--out", w.store],
     "is the input --features"),
    # train-backend
    ("train-backend: --out is --embeddings", lambda w, s: ["train-backend", "--embeddings", w.emb, "--out", w.emb],
     "is the input --embeddings"),
    ("train-backend: NaN embedding over a good back-end", lambda w, s: ["train-backend", "--embeddings",
                                                                        _nan_embeddings(w, s), "--out", w.cosine],
     "embedding of 's1-u1' contain NaN"),
    ("train-backend: scp whose ark is missing", lambda w, s: ["train-backend", "--embeddings", _scp_without_ark(w, s),
                                                              "--out", s / "b"], "gone.ark"),
    ("train-backend: truncated xvector.h5", lambda w, s: ["train-backend", "--embeddings",
                                                          _truncated(w.emb / "xvector.h5", s / "emb" / "xvector.h5"),
                                                          "--out", s / "b"], "xvector.h5: cannot read"),
    # score
    ("score: --out is --trials", lambda w, s: ["score", "--embeddings", w.emb, "--trials", w.trials, "--out",
                                               w.trials], "is the input --trials"),
    ("score: trials name an unknown utterance", lambda w, s: ["score", "--embeddings", w.emb, "--trials",
                                                              _trials_unknown_utt(w, s), "--out", w.scores],
     "nobody-u9"),
    ("score: back-end of another dimension", lambda w, s: ["score", "--embeddings", w.emb, "--trials", w.trials,
                                                           "--backend-dir", _wrong_dim_backend(w, s), "--out",
                                                           w.scores], "backend7"),
    ("score: mean of another dimension", lambda w, s: ["score", "--embeddings", w.emb, "--trials", w.trials,
                                                       "--mean", _wrong_dim_mean(w, s), "--out", w.scores], "mean.npy"),
    ("score: NaN embeddings", lambda w, s: ["score", "--embeddings", _nan_embeddings(w, s), "--trials", w.trials,
                                            "--out", w.scores], "contain NaN"),
    # compute-metrics / calibrate / plots / report
    ("compute-metrics: --out is --scores", lambda w, s: ["compute-metrics", "--scores", w.scores, "--trials", w.trials,
                                                 "--out", w.scores], "is the input --scores"),
    ("compute-metrics: --det is --trials", lambda w, s: ["compute-metrics", "--scores", w.scores, "--trials", w.trials,
                                                 "--det", w.trials], "is the input --trials"),
    ("compute-metrics: NaN score over a good result", lambda w, s: ["compute-metrics", "--scores", _scores_with_nan(w, s),
                                                            "--trials", w.trials, "--out", w.metrics],
     "scores.txt:4"),
    ("compute-metrics: a trial without score", lambda w, s: ["compute-metrics", "--scores", _scores_missing_trial(w, s),
                                                     "--trials", w.trials, "--out", w.metrics], "scores.txt"),
    ("calibrate: train, --out is --scores", lambda w, s: ["calibrate", "train", "--scores", w.scores, "--trials",
                                                         w.trials, "--out", w.scores], "is the input --scores"),
    ("calibrate: apply, --out is --scores", lambda w, s: ["calibrate", "apply", "--scores", w.scores, "--calibration",
                                                         _calibration(w, s), "--out", w.scores],
     "is the input --scores"),
    ("plot-det: --out is --trials", lambda w, s: ["plot-det", "--system", f"a={w.scores}", "--trials", w.trials,
                                                  "--out", w.trials], "is the input --trials"),
    ("report: --out is a metrics file", lambda w, s: ["report", "--system", f"a={w.metrics}", "--out", w.metrics],
     "is the input --system"),
    ("plot-training: no metrics.tsv", lambda w, s: ["plot-training", s], "metrics.tsv"),
    # embed / verify (a model you call)
    ("embed: a missing WAV", lambda w, s: ["embed", "--model", w.ckpt, s / "nope.wav", "--out", s / "out"],
     "audio file not found"),
    ("embed: --out over the embeddings, a missing WAV", lambda w, s: ["embed", "--model", w.ckpt, s / "nope.wav",
                                                                      "--out", w.emb], "audio file not found"),
    ("verify: a file that is not a model", lambda w, s: ["verify", "--model", w.trials, w.root / "wav" / "s0-u0.wav",
                                                         w.root / "wav" / "s0-u1.wav"], "not a pyspeaker model"),
    # average / voxceleb-eval
    ("average: a voxceleb_trainer model", lambda w, s: ["average", "--checkpoint", _vt_model(w, s), "--checkpoint",
                                                        w.ckpt, "--out", s / "avg.pt"], "voxceleb_trainer model"),
    ("average: --out is an input", lambda w, s: ["average", "--checkpoint", w.exp / "checkpoints" / "init.pt",
                                                 "--checkpoint", w.ckpt, "--out", w.ckpt], "is the input --checkpoint"),
    ("voxceleb-eval: --save-scores is --test_list", lambda w, s: ["voxceleb-eval", "--initial_model",
                                                                  _vt_model(w, s), "--model", "ResNetSE34L",
                                                                  "--trainfunc", "angleproto", "--test_list",
                                                                  w.trials, "--save-scores", w.trials],
     "is the input --test_list"),
    # export (format names, parity and the other refusals are in test_export.py)
    ("export: a voxceleb_trainer model", lambda w, s: ["export", "--model", _vt_model(w, s), "--format",
                                                       "torchscript", "--out", s / "m.pt"], "voxceleb_trainer model"),
    ("export: --out is --model", lambda w, s: ["export", "--model", w.ckpt, "--format", "onnx", "--out", w.ckpt],
     "is the input --model"),
    # import-model (the toolkits' own refusals are in test_import_*.py)
    ("import-model: a WeSpeaker checkpoint without its config", lambda w, s: [
        "import-model", "--from", "wespeaker", "--checkpoint", w.ckpt, "--out", s / "m"], "pass --config config.yaml"),
    ("import-model: --out over the experiment", lambda w, s: [
        "import-model", "--from", "voxceleb_trainer", "--checkpoint", w.ckpt, "--out", w.exp],
     "contains the input --checkpoint"),
    # the recipe's validation split, trial checks and fusion
    ("split-valid: more speakers than can be held out", lambda w, s: [
        "split-valid", "--data-dir", w.data, "--num-speakers", "99", "--valid-out", s / "v", "--train-out", s / "t"],
     "--valid-speakers 99"),
    ("split-valid: --train-out is --data-dir", lambda w, s: [
        "split-valid", "--data-dir", w.data, "--num-speakers", "1", "--valid-out", s / "v", "--train-out", w.data],
     "is the input --data-dir"),
    ("check-trials: a trial names an unknown utterance", lambda w, s: [
        "check-trials", "--trials", _write(s / "trials", "s0-u0 nobody target\n"), "--test-dir", w.data],
     "'nobody'"),
    ("fuse: --out is --trials", lambda w, s: [
        "fuse", "train", "--scores", w.scores, "--trials", w.trials, "--out", w.trials], "is the input --trials"),
    # download-model (the downloads themselves, interrupted and mismatched, are in test_download.py)
    ("download-model: unknown model name", lambda w, s: ["download-model", "no_such.model", "--out", s / "models"],
     "baseline_lite_ap.model"),
    # corpus preparation scripts (local/): a case named after the script runs it
    ("local/prepare_fsdd.py: missing corpus", lambda w, s: ["local/prepare_fsdd.py", "--fsdd-dir", s / "fsdd",
                                                            "--out", s / "data"], "fsdd"),
    ("local/prepare_fsdd.py: output over the corpus",
     lambda w, s: ["local/prepare_fsdd.py", "--fsdd-dir", _mkdir(s / "data" / "fsdd_open_train"), "--out", s / "data"],
     "is the input --fsdd-dir"),
]


def _write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _missing_audio(w: World, s: Path) -> Path:
    return _data_with_audio(w, s, 0, s / "gone.wav")


def _nan_wav_named(w: World, s: Path) -> Path:
    d = _nan_wav(w, s)
    target = s / "named" / "train"
    target.parent.mkdir()
    d.rename(target)
    return target


def _rate_8k(w: World, s: Path) -> Path:
    sf.write(s / "low.wav", np.zeros(4000, dtype=np.float32), 8000, subtype="PCM_16")
    return _data_with_audio(w, s, 1, s / "low.wav")


def _corrupt_audio(w: World, s: Path) -> Path:
    (s / "junk.wav").write_bytes(b"RIFF\x00\x00junk" * 50)
    return _data_with_audio(w, s, 1, s / "junk.wav")


def _calibration(w: World, s: Path) -> Path:
    run_cli("calibrate", "train", "--scores", w.scores, "--trials", w.trials, "--out", s / "cal.json", check=True)
    return s / "cal.json"


def test_table_has_forty_cases_over_every_command():
    from pyspeaker.cli import cli

    assert len(CASES) >= 40
    covered = {name.split(":")[0] for name, _, _ in CASES}
    every = set(cli.list_commands(None))
    assert every <= covered, sorted(every - covered)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path_factory):
    name, builder, expected = case
    scratch = tmp_path_factory.mktemp("case")
    argv = builder(world, scratch)
    assert argv[0] == name.split(":")[0]  # the case's name says which command it runs
    before = _snapshot(world.root, scratch)
    proc = run_local(*argv) if argv[0].startswith("local/") else run_cli(*argv)
    after = _snapshot(world.root, scratch)
    assert proc.returncode != 0, f"{name}: exit 0\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if argv[0] == "validate-data":  # it lists every problem, one 'file:line: problem' line each
        errors = [line for line in proc.stderr.splitlines() if expected in line][:1] or proc.stderr.splitlines()
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert expected in errors[0], errors[0]
    assert after == before, f"{name}: earlier outputs changed: " + \
        ", ".join(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if proc.returncode == 1:  # bad input names a file; usage errors (exit 2) name the option
        assert "/" in errors[0] or "--" in errors[0], errors[0]
