"""``pyspeaker score``: cosine-score a trial list into ``scores.txt`` (``<enroll> <test> <score>``)."""
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


def format_scores(enroll: list[str], test: list[str], scores) -> str:
    """``<enroll> <test> <score>`` lines (%.6f), built by one %-format (about 2x faster than f-strings)."""
    n = len(scores)
    values: list = [None] * (3 * n)
    values[0::3] = enroll
    values[1::3] = test
    values[2::3] = scores.tolist()
    return ("%s %s %.6f\n" * n) % tuple(values)


@click.command(name="score")
@click.option("--embeddings", "embeddings", required=True, type=click.Path(exists=True, path_type=Path),
              help="Enroll embeddings: a dir with xvector.h5/xvector.scp, or an .h5/.scp/.ark file "
                   "(also used for the test side unless --test-embeddings is given).")
@click.option("--test-embeddings", type=click.Path(exists=True, path_type=Path), default=None,
              help="Test-side embeddings when they are stored apart from the enroll ones.")
@click.option("--trials", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trial list: Kaldi '<enroll> <test> [target|nontarget]' or VoxCeleb '<1|0> <p1> <p2>'.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output scores file, one '<enroll> <test> <score>' line per trial, in trial order.")
@click.option("--mean-from", type=click.Path(exists=True, path_type=Path), default=None,
              help="Embeddings whose average is subtracted before length normalisation (e.g. the training set).")
@click.option("--mean", "mean_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Mean vector to subtract before length normalisation (.npy, or a Kaldi vector such as mean.vec).")
def command(embeddings: Path, test_embeddings: Path | None, trials: Path, out: Path,
            mean_from: Path | None, mean_file: Path | None) -> None:
    """Cosine-score every trial and write scores.txt (atomically)."""
    from pyspeaker.data.trials import read_trials
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import atomic_file
    from pyspeaker.log import setup_logging
    from pyspeaker.scoring.cosine import score_trials
    from pyspeaker.store.embeddings import load_embeddings

    setup_logging()
    if mean_from is not None and mean_file is not None:
        raise ConfigError("give --mean-from or --mean, not both")
    start = time.perf_counter()
    trial_list = read_trials(trials)
    ids, matrix = load_embeddings(embeddings)
    test_ids = test_matrix = None
    if test_embeddings is not None:
        test_ids, test_matrix = load_embeddings(test_embeddings)
    mean = load_mean(mean_file, mean_from)
    loaded = time.perf_counter()
    scores = score_trials(ids, matrix, trial_list, mean=mean, test_ids=test_ids, test_emb=test_matrix)
    scored = time.perf_counter()
    text = format_scores(list(trial_list.enroll), list(trial_list.test), scores)
    with atomic_file(out) as tmp:
        tmp.write_text(text)
    done = time.perf_counter()
    log.info("scored %d trials from %s with %d embeddings%s (load %.2f s, score %.2f s, write %.2f s) -> %s",
             len(scores), trials, len(ids) + (len(test_ids) if test_ids is not None else 0),
             ", mean subtracted" if mean is not None else "",
             loaded - start, scored - loaded, done - scored, out)
