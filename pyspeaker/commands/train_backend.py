"""``pyspeaker train-backend``: stage 4, fit the scoring back-end on training embeddings.

``cosine``: the training mean (``mean.npy``, subtracted before cosine scoring). ``plda``: Kaldi's
x-vector back-end (mean -> LDA -> length norm -> two-covariance PLDA). With speaker labels the
back-end dir also gets ``cohort.h5``, the speakers' mean embeddings, for score normalisation.
"""
from __future__ import annotations

from pathlib import Path

import click


def speaker_labels(ids: list[str], utt2spk: Path) -> list[str]:
    """The speaker of each embedding id, from a Kaldi ``utt2spk`` file (or a dir holding one)."""
    from pyspeaker.data import read_utt2spk
    from pyspeaker.errors import DataError

    path = utt2spk / "utt2spk" if utt2spk.is_dir() else utt2spk
    if not path.is_file():
        raise DataError("no utt2spk file here", path=utt2spk)
    spk = read_utt2spk(path)
    missing = [u for u in ids if u not in spk]
    if missing:
        more = f" ({len(missing)} embeddings in all have none)" if len(missing) > 1 else ""
        raise DataError(f"no speaker for embedding '{missing[0]}'{more}", path=path)
    return [spk[u] for u in ids]


def _default_utt2spk(embeddings: Path) -> Path | None:
    folder = embeddings if embeddings.is_dir() else embeddings.parent
    return folder / "utt2spk" if (folder / "utt2spk").is_file() else None


@click.command(name="train-backend")
@click.option("--embeddings", required=True, type=click.Path(exists=True, path_type=Path),
              help="Training-set embeddings (a directory with xvector.h5/xvector.scp, or the file).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Back-end directory (exp/<name>/backend); replaced atomically.")
@click.option("--backend", type=click.Choice(["cosine", "plda"]), default="cosine", show_default=True,
              help="cosine: cosine scoring after subtracting the training mean. plda: Kaldi's back-end, "
                   "mean subtraction -> LDA -> length normalisation -> two-covariance PLDA.")
@click.option("--utt2spk", type=click.Path(exists=True, path_type=Path), default=None,
              help="Speaker of each training embedding: a Kaldi utt2spk file, or a data dir / feature store "
                   "holding one (default: utt2spk next to the embeddings, if any). Needed by plda and the cohort.")
@click.option("--lda-dim", type=click.IntRange(0), default=200, show_default=True,
              help="plda: LDA output dimension (clipped to #speakers - 1 and the embedding dimension, with a "
                   "warning); 0 skips LDA.")
@click.option("--num-em-iters", type=click.IntRange(1), default=10, show_default=True,
              help="plda: EM iterations (Kaldi's ivector-compute-plda default).")
@click.option("--cohort/--no-cohort", default=True, show_default=True,
              help="Also store the training speakers' mean embeddings (cohort.h5) for --score-norm "
                   "(only when speaker labels are available).")
def command(embeddings: Path, out_dir: Path, backend: str, utt2spk: Path | None, lda_dim: int, num_em_iters: int,
            cohort: bool) -> None:
    """Train a back-end on training embeddings and store it under --out (backend.json + parameters)."""
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import atomic_dir, refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.scoring.backend import save_backend, train_backend
    from pyspeaker.store.embeddings import load_embeddings, speaker_means

    setup_logging()
    log = get_logger("train-backend")
    refuse_overlap({"--out": out_dir}, {"--embeddings": embeddings, "--utt2spk": utt2spk})
    ids, emb = load_embeddings(embeddings)
    labels_path = utt2spk if utt2spk is not None else _default_utt2spk(embeddings)
    if labels_path is None and backend == "plda":
        raise ConfigError("the plda back-end needs speaker labels: give --utt2spk (a utt2spk file or a data dir)")
    labels = speaker_labels(ids, labels_path) if labels_path is not None else None
    model, info = train_backend(backend, emb, labels, lda_dim=lda_dim or None, num_em_iters=num_em_iters)
    description = {"embeddings": str(embeddings), "num_embeddings": len(ids), "dim": int(emb.shape[1]),
                   "utt2spk": None if labels_path is None else str(labels_path),
                   "num_speakers": None if labels is None else len(set(labels)), **info}
    cohort_data = None
    if cohort and labels is not None:
        names, means, _ = speaker_means(ids, emb, dict(zip(ids, labels)))
        cohort_data = (names, means)
    with atomic_dir(out_dir) as tmp:
        save_backend(model, tmp, description, cohort_data)
    log.info("%s back-end (%s) from %d embeddings%s%s -> %s", backend, model.label, len(ids),
             "" if labels is None else f" of {description['num_speakers']} speakers",
             "" if cohort_data is None else f", cohort of {len(cohort_data[0])} speaker means", out_dir)
