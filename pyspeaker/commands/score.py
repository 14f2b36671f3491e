"""``pyspeaker score``: score a trial list into ``scores.txt`` (``<enroll> <test> <score>``, trial order).

Back-end: cosine (optionally after subtracting a mean: ``--mean``/``--mean-from``), or whatever a
back-end dir from ``pyspeaker train-backend`` holds (``--backend-dir``: cosine + mean, or
LDA + PLDA). Optional score normalisation against a cohort (``--score-norm snorm|asnorm``) and
linear calibration to log-likelihood ratios (``--calibration``). Next to the scores it writes
``scores.json``, which says how they were made (read by ``pyspeaker compute-metrics``).
"""
from __future__ import annotations

import time
from pathlib import Path

import click

from pyspeaker.log import get_logger

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


def _crop_scores(trial_codes, embeddings: Path, test_embeddings: Path | None, calib):
    from pyspeaker.scoring.crops import crop_scores
    from pyspeaker.scoring.pipeline import embedding_rows
    from pyspeaker.store.embeddings import load_crop_embeddings

    ids, crops = load_crop_embeddings(embeddings)
    test_ids, test_crops = (ids, crops) if test_embeddings is None else load_crop_embeddings(test_embeddings)
    scores = crop_scores(crops, embedding_rows(trial_codes, trial_codes.enroll, ids, "enroll"),
                         test_crops, embedding_rows(trial_codes, trial_codes.test, test_ids, "test"))
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


def _check_finite_scores(scores, trial_codes, trials: Path) -> None:
    """A back-end whose statistics went wrong gives NaN scores: refuse them before writing."""
    import numpy as np

    from pyspeaker.errors import DataError

    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise DataError(f"{bad.size} scores are not finite (first: trial {trial_codes.pair(int(bad[0]))} scored "
                        f"{scores[bad[0]]}); check the back-end and the embeddings", path=trials,
                        line=trial_codes.line(int(bad[0])))


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
def command(embeddings: Path, test_embeddings: Path | None, trials: Path, out: Path, backend_dir: Path | None,
            mean_from: Path | None, mean_file: Path | None, score_norm: str, cohort: Path | None, top_n: int,
            num_utts: Path | None, crop_scoring: bool, calibration: Path | None) -> None:
    """Score every trial with the chosen back-end and write scores.txt (atomically)."""
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import setup_logging
    from pyspeaker.scoring.backend import CosineBackend, cohort_path, load_backend
    from pyspeaker.scoring.lists import read_trial_codes
    from pyspeaker.scoring.pipeline import (check_sidecar_free, read_num_utts, score_codes, sidecar_path,
                                            write_scores, write_sidecar)
    from pyspeaker.store.embeddings import load_embeddings

    setup_logging()
    refuse_overlap({"--out": out, "--out (its scores.json)": sidecar_path(out)},
                   {"--embeddings": embeddings, "--test-embeddings": test_embeddings, "--trials": trials,
                    "--backend-dir": backend_dir, "--mean-from": mean_from, "--mean": mean_file, "--cohort": cohort,
                    "--num-utts": num_utts, "--calibration": calibration})
    if mean_from is not None and mean_file is not None:
        raise ConfigError("give --mean-from or --mean, not both")
    if backend_dir is not None and (mean_from is not None or mean_file is not None):
        raise ConfigError("give --backend-dir or a mean (--mean/--mean-from), not both: the back-end has its own mean")
    if crop_scoring and (backend_dir or mean_from or mean_file or score_norm != "none" or num_utts):
        raise ConfigError("--crop-scoring is voxceleb_trainer's own score: give no back-end, mean, norm or num-utts")
    check_sidecar_free(out)
    start = time.perf_counter()
    trial_codes = read_trial_codes(trials)
    ids, matrix = load_embeddings(embeddings)
    test_ids = test_matrix = None
    if test_embeddings is not None:
        test_ids, test_matrix = load_embeddings(test_embeddings)
    meta = None
    if backend_dir is not None:
        backend, meta = load_backend(backend_dir)
    else:
        backend = CosineBackend(load_mean(mean_file, mean_from))
    cohort_matrix = None
    if score_norm != "none":
        if cohort is None and backend_dir is not None:
            cohort = cohort_path(backend_dir, meta)
        if cohort is None:
            raise ConfigError(f"--score-norm {score_norm} needs --cohort (or a --backend-dir with a cohort)")
        _, cohort_matrix = load_embeddings(cohort)
    counts = read_num_utts(num_utts, ids) if num_utts is not None else None
    calib = None
    if calibration is not None:
        from pyspeaker.scoring.calibration import Calibration

        calib = Calibration.load(calibration)
    _check_dimensions({"--embeddings": (embeddings, matrix),
                       "--test-embeddings": (test_embeddings, test_matrix),
                       "--backend-dir" if backend_dir else "--mean": (backend_dir or mean_file or mean_from,
                                                                      backend.mean),
                       "--cohort": (cohort, cohort_matrix)})
    loaded = time.perf_counter()
    if crop_scoring:
        scores = _crop_scores(trial_codes, embeddings, test_embeddings, calib)
    else:
        scores = score_codes(trial_codes, ids, matrix, test_ids=test_ids, test_emb=test_matrix, backend=backend,
                             score_norm=score_norm, cohort=cohort_matrix, top_n=top_n, num_utts=counts,
                             calibration=calib)
    scored = time.perf_counter()
    _check_finite_scores(scores, trial_codes, trials)
    size = write_scores(out, trial_codes, scores)
    label = "voxceleb_trainer-crops" if crop_scoring else backend.label
    write_sidecar(out, {
        "scores": str(out), "num_trials": len(scores), "scores_bytes": size,
        "trials": str(trials), "trials_lines": trial_codes.num_lines,
        "embeddings": str(embeddings), "test_embeddings": None if test_embeddings is None else str(test_embeddings),
        "backend": label,
        "backend_type": "crops" if crop_scoring else backend.name,
        "backend_dir": None if backend_dir is None else str(backend_dir),
        "mean": str(mean_file or mean_from) if (mean_file or mean_from) else None,
        "score_norm": score_norm, "top_n": top_n if score_norm == "asnorm" else None,
        "cohort": None if cohort_matrix is None else str(cohort),
        "cohort_size": None if cohort_matrix is None else int(len(cohort_matrix)),
        "num_utts": None if num_utts is None else str(num_utts),
        "calibration": None if calibration is None else str(calibration), "calibrated": calib is not None,
    })
    done = time.perf_counter()
    norm_text = "" if score_norm == "none" else f", {score_norm}" + (f" (top {top_n})" if score_norm == "asnorm" else "")
    log.info("scored %d trials from %s with %d embeddings, %s%s%s%s (load %.2f s, score %.2f s, write %.2f s) -> %s",
             len(scores), trials, len(ids) + (len(test_ids) if test_ids is not None else 0), label,
             ", mean subtracted" if not crop_scoring and backend.name == "cosine" and backend.mean is not None else "", norm_text,
             ", calibrated" if calib is not None else "", loaded - start, scored - loaded, done - scored, out)
