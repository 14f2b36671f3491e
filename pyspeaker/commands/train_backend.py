"""`pyspeaker train-backend`: stage 4, fit the scoring back-end on training embeddings."""
from __future__ import annotations

import click


@click.command(name="train-backend")
@click.option("--embeddings", required=True, type=click.Path(exists=True),
              help="Training-set embeddings (a directory with xvector.h5/xvector.scp, or the file).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Back-end directory (exp/<name>/backend); replaced atomically.")
@click.option("--backend", type=click.Choice(["cosine"]), default="cosine", show_default=True,
              help="cosine: cosine scoring after subtracting the training-set mean embedding.")
def command(embeddings, out_dir, backend):
    """Train a back-end: for cosine, the mean of the training embeddings (mean.npy).

    Subtracting the training mean before cosine scoring removes the offset that every embedding
    shares, which otherwise inflates all scores alike.
    """
    import json

    import numpy as np

    from pyspeaker.fileio import atomic_dir
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.store.embeddings import load_embeddings

    setup_logging()
    ids, emb = load_embeddings(embeddings)
    mean = emb.astype(np.float64).mean(axis=0).astype(np.float32)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "mean.npy", mean)
        (tmp / "backend.json").write_text(json.dumps(
            {"backend": backend, "embeddings": str(embeddings), "num_embeddings": len(ids), "dim": int(emb.shape[1]),
             "files": {"mean": "mean.npy"}}, indent=2) + "\n")
    get_logger("train-backend").info("%s back-end from %d embeddings -> %s", backend, len(ids), out_dir)
