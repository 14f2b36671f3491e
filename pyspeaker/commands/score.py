"""``pyspeaker score``: score a trial list into ``scores.txt`` (``<enroll> <test> <score>``, trial order).

Back-end: cosine (optionally after subtracting a mean: ``--mean``/``--mean-from``), or whatever a
back-end dir from ``pyspeaker train-backend`` holds (``--backend-dir``: cosine + mean, or
LDA + PLDA). Optional score normalisation against a cohort (``--score-norm snorm|asnorm``) and
linear calibration to log-likelihood ratios (``--calibration``). Next to the scores it writes
``scores.json``, which says how they were made (read by ``pyspeaker compute-metrics``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pyspeaker.log import get_logger

if TYPE_CHECKING:  # the command imports numpy, pyarrow and the back-ends only when it runs
    import numpy as np

    from pyspeaker.data.trials import Trials
    from pyspeaker.scoring.backend import Backend
    from pyspeaker.scoring.calibration import Calibration

log = get_logger(__name__)


def load_mean(mean_file: Path | None, mean_from: Path | None):
    """The vector to subtract before length normalisation, or None.

    ``mean_file`` is a .npy file or a Kaldi vector (e.g. ``mean.vec`` from ivector-mean);
    ``mean_from`` is an embeddings dir/file whose rows are averaged.
    """
    import numpy as np

    from pyspeaker.errors import DataError

    if mean_from is not None:
        from pyspeaker.store.embeddings import load_embeddings

        ids, matrix = load_embeddings(mean_from)
        log.info("mean of %d embeddings from %s", len(ids), mean_from)
        return matrix.astype(np.float64).mean(axis=0).astype(np.float32)
    if mean_file is None:
        return None
    try:
        if mean_file.suffix == ".npy":
            vec = np.load(mean_file)
        else:
            import kaldiio

            vec = kaldiio.load_mat(str(mean_file))
    except Exception as e:  # unreadable or not a vector: one clear line, not a traceback
        raise DataError(f"cannot read mean vector ({e})", path=mean_file) from e
    vec = np.asarray(vec, dtype=np.float32)
    if vec.ndim != 1 and not (vec.ndim == 2 and 1 in vec.shape):
        raise DataError(f"mean must be a vector, got shape {vec.shape}", path=mean_file)
    return vec.reshape(-1)


def _crop_scores(trials, embeddings: Path, test_embeddings: Path | None, calib):
    from pyspeaker.scoring.crops import crop_scores
    from pyspeaker.scoring.pipeline import trial_rows
    from pyspeaker.store.embeddings import load_crop_embeddings

    ids, crops = load_crop_embeddings(embeddings)
    test_ids, test_crops = (None, crops) if test_embeddings is None else load_crop_embeddings(test_embeddings)
    enroll_rows, test_rows = trial_rows(trials, ids, test_ids)
    scores = crop_scores(crops, enroll_rows, test_crops, test_rows)
    return scores if calib is None else calib.apply(scores)


def _check_dimensions(sources: dict) -> None:
    """All vectors of a scoring run share one dimension; a mismatch names the file that differs."""
    from pyspeaker.errors import DataError

    first = None
    for option, (path, values) in sources.items():
        if path is None or values is None:
            continue
        dim = values.shape[-1] if values.ndim > 1 else values.size
        if first is None:
            first = (option, path, dim)
        elif dim != first[2]:
            raise DataError(f"{option} has dimension {dim}, but {first[0]} {first[1]} has {first[2]}", path=path)


def _check_finite_scores(scores, trials, trials_path: Path) -> None:
    """A back-end whose statistics went wrong gives NaN scores: refuse them before writing."""
    import numpy as np

    from pyspeaker.errors import DataError

    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise DataError(f"{bad.size} scores are not finite (first: trial {trials.pair(int(bad[0]))} scored "
                        f"{scores[bad[0]]}); check the back-end and the embeddings", path=trials_path,
                        line=trials.line(int(bad[0])))


@dataclass
class _Run:
    """What one scoring run reads: the options' files, loaded."""

    trials: Trials
    ids: list[str]
    matrix: np.ndarray
    test_ids: list[str] | None = None
    test_matrix: np.ndarray | None = None
    backend: Backend | None = None
    cohort: Path | None = None
    cohort_matrix: np.ndarray | None = None
    counts: np.ndarray | None = None
    calib: Calibration | None = None


@dataclass(frozen=True)
class _Options:
    """The command's options (see the click decorators below)."""

    embeddings: Path
    test_embeddings: Path | None
    trials: Path
    out: Path
    backend_dir: Path | None
    mean_from: Path | None
    mean_file: Path | None
    score_norm: str
    cohort: Path | None
    top_n: int
    num_utts: Path | None
    crop_scoring: bool
    calibration: Path | None


def _check_options(o: _Options) -> None:
    """Refuse outputs that would replace an input, and option combinations that make no sense."""
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.scoring.pipeline import check_sidecar_free, sidecar_path

    refuse_overlap({"--out": o.out, "--out (its scores.json)": sidecar_path(o.out)},
                   {"--embeddings": o.embeddings, "--test-embeddings": o.test_embeddings,
                    "--trials": o.trials, "--backend-dir": o.backend_dir, "--mean-from": o.mean_from,
                    "--mean": o.mean_file, "--cohort": o.cohort, "--num-utts": o.num_utts,
                    "--calibration": o.calibration})
    if o.mean_from is not None and o.mean_file is not None:
        raise ConfigError("give --mean-from or --mean, not both")
    if o.backend_dir is not None and (o.mean_from is not None or o.mean_file is not None):
        raise ConfigError("give --backend-dir or a mean (--mean/--mean-from), not both: the back-end has its own mean")
    if o.crop_scoring and (o.backend_dir or o.mean_from or o.mean_file or o.score_norm != "none" or o.num_utts):
        raise ConfigError("--crop-scoring is voxceleb_trainer's own score: give no back-end, mean, norm or num-utts")
    check_sidecar_free(o.out)


def _load(o: _Options) -> _Run:
    """Trials, embeddings, back-end, cohort, enrollment counts and calibration named by the options."""
    from concurrent.futures import ThreadPoolExecutor

    from pyspeaker.data.trials import read_trials
    from pyspeaker.errors import ConfigError
    from pyspeaker.scoring.backend import CosineBackend, cohort_path, load_backend
    from pyspeaker.scoring.pipeline import utterance_counts
    from pyspeaker.store.embeddings import load_embeddings

    with ThreadPoolExecutor(max_workers=1) as pool:  # the trial list is parsed while the embeddings load
        trials = pool.submit(read_trials, o.trials)
        try:
            ids, matrix = load_embeddings(o.embeddings)
        except Exception:
            trials.result()  # a bad trial list is reported first, as when it was read first
            raise
        run = _Run(trials.result(), ids, matrix)
    if o.test_embeddings is not None:
        run.test_ids, run.test_matrix = load_embeddings(o.test_embeddings)
    meta = None
    if o.backend_dir is not None:
        run.backend, meta = load_backend(o.backend_dir)
    else:
        run.backend = CosineBackend(load_mean(o.mean_file, o.mean_from))
    if o.score_norm != "none":
        run.cohort = o.cohort if o.cohort is not None or o.backend_dir is None else \
            cohort_path(o.backend_dir, meta)
        if run.cohort is None:
            raise ConfigError(f"--score-norm {o.score_norm} needs --cohort (or a --backend-dir with a cohort)")
        _, run.cohort_matrix = load_embeddings(run.cohort)
    if o.num_utts is not None:
        run.counts = utterance_counts(o.num_utts, run.ids)
    if o.calibration is not None:
        from pyspeaker.scoring.calibration import Calibration

        run.calib = Calibration.load(o.calibration)
    _check_dimensions({"--embeddings": (o.embeddings, run.matrix),
                       "--test-embeddings": (o.test_embeddings, run.test_matrix),
                       "--backend-dir" if o.backend_dir else "--mean": (
                           o.backend_dir or o.mean_file or o.mean_from, run.backend.mean),
                       "--cohort": (run.cohort, run.cohort_matrix)})
    return run


def _scores(run: _Run, o: _Options):
    """Every trial's score, in trial order."""
    from pyspeaker.scoring.pipeline import score_codes

    if o.crop_scoring:
        return _crop_scores(run.trials, o.embeddings, o.test_embeddings, run.calib)
    return score_codes(run.trials, run.ids, run.matrix, test_ids=run.test_ids, test_emb=run.test_matrix,
                       backend=run.backend, score_norm=o.score_norm, cohort=run.cohort_matrix, top_n=o.top_n,
                       num_utts=run.counts, calibration=run.calib, overwrite=True)


def _label(run: _Run, o: _Options) -> str:
    return "voxceleb_trainer-crops" if o.crop_scoring else run.backend.label


def _sidecar(run: _Run, o: _Options, num_scores: int, size: int) -> dict:
    """What scores.json says about the scores: inputs, back-end, normalisation, calibration."""
    path = lambda key: None if getattr(o, key) is None else str(getattr(o, key))  # noqa: E731
    norm = o.score_norm
    return {
        "scores": str(o.out), "num_trials": num_scores, "scores_bytes": size,
        "trials": str(o.trials), "trials_lines": run.trials.num_lines,
        "embeddings": str(o.embeddings), "test_embeddings": path("test_embeddings"),
        "backend": _label(run, o), "backend_type": "crops" if o.crop_scoring else run.backend.name,
        "backend_dir": path("backend_dir"), "mean": path("mean_file") or path("mean_from"),
        "score_norm": norm, "top_n": o.top_n if norm == "asnorm" else None,
        "cohort": None if run.cohort_matrix is None else str(run.cohort),
        "cohort_size": None if run.cohort_matrix is None else int(len(run.cohort_matrix)),
        "num_utts": path("num_utts"), "calibration": path("calibration"), "calibrated": run.calib is not None,
    }


def _log_done(run: _Run, o: _Options, num_scores: int, times: list[float]) -> None:
    norm = o.score_norm
    norm_text = "" if norm == "none" else f", {norm}" + (f" (top {o.top_n})" if norm == "asnorm" else "")
    mean = not o.crop_scoring and run.backend.name == "cosine" and run.backend.mean is not None
    load, score, write = (b - a for a, b in zip(times, times[1:]))
    log.info("scored %d trials from %s with %d embeddings, %s%s%s%s (load %.2f s, score %.2f s, write %.2f s) -> %s",
             num_scores, o.trials, len(run.ids) + (len(run.test_ids) if run.test_ids is not None else 0),
             _label(run, o), ", mean subtracted" if mean else "", norm_text,
             ", calibrated" if run.calib is not None else "", load, score, write, o.out)


@click.command(name="score")
@click.option("--embeddings", "embeddings", required=True, type=click.Path(exists=True, path_type=Path),
              help="Enroll embeddings: a dir with xvector.h5/xvector.scp, or an .h5/.scp/.ark file "
                   "(also used for the test side unless --test-embeddings is given).")
@click.option("--test-embeddings", type=click.Path(exists=True, path_type=Path), default=None,
              help="Test-side embeddings when they are stored apart from the enroll ones.")
@click.option("--trials", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trial list: Kaldi '<enroll> <test> [target|nontarget]' or VoxCeleb '<1|0> <p1> <p2>'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output scores file, one '<enroll> <test> <score>' line per trial, in trial order "
                   "(plus a scores.json sidecar describing how the scores were made).")
@click.option("--backend-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Back-end trained by 'pyspeaker train-backend' (its backend.json says cosine or plda).")
@click.option("--mean-from", type=click.Path(exists=True, path_type=Path), default=None,
              help="Cosine: embeddings whose average is subtracted before length normalisation (e.g. the training set).")
@click.option("--mean", "mean_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Cosine: mean vector to subtract before length normalisation (.npy, or a Kaldi vector such as mean.vec).")
@click.option("--score-norm", type=click.Choice(["none", "snorm", "asnorm"]), default="none", show_default=True,
              help="Score normalisation against the cohort: S-norm, or adaptive S-norm over the --top-n "
                   "highest cohort scores (as WeSpeaker).")
@click.option("--cohort", type=click.Path(exists=True, path_type=Path), default=None,
              help="Cohort embeddings for --score-norm (default: the back-end dir's cohort.h5, the training "
                   "speakers' mean embeddings).")
@click.option("--top-n", type=click.IntRange(1), default=300, show_default=True,
              help="AS-norm: number of highest cohort scores used per embedding.")
@click.option("--num-utts", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PLDA: Kaldi num_utts.ark ('<enroll-id> <count>') for enroll embeddings that average "
                   "several utterances (others count 1).")
@click.option("--crop-scoring", is_flag=True,
              help="voxceleb_trainer's score from per-crop embeddings (made with 'extract --eval-frames'): minus "
                   "the mean distance between the normalised crops of the two sides. No back-end or norm.")
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="calibration.json from 'pyspeaker calibrate train': write calibrated scores (LLRs).")
def command(**kwargs) -> None:
    """Score every trial with the chosen back-end and write scores.txt (atomically)."""
    from pyspeaker.log import setup_logging
    from pyspeaker.scoring.lists import write_scores
    from pyspeaker.scoring.pipeline import write_sidecar

    setup_logging()
    options = _Options(**kwargs)
    _check_options(options)
    times = [time.perf_counter()]
    run = _load(options)
    times.append(time.perf_counter())
    scores = _scores(run, options)
    times.append(time.perf_counter())
    _check_finite_scores(scores, run.trials, options.trials)
    size = write_scores(options.out, run.trials, scores)
    write_sidecar(options.out, _sidecar(run, options, len(scores), size))
    times.append(time.perf_counter())
    _log_done(run, options, len(scores), times)
