"""``pyspeaker extract-stats``: the non-neural baseline, per-utterance feature mean and standard deviation."""
from __future__ import annotations

import click


@click.command(name="extract-stats")
@click.option("--features", required=True, type=click.Path(file_okay=False),
              help="Feature store of the set (e.g. MFCC: features/mfcc_<id>/<set>).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory; gets xvector.h5/scp/ark like 'pyspeaker extract' (replaced atomically).")
def command(features, out_dir):
    """Write one vector per utterance: the mean and standard deviation of its features over time
    (2 x dim values; with 30 MFCCs, 60).

    No network: this is the baseline a trained model must beat. The vectors are stored like
    embeddings (with speaker means from the store's utt2spk), so the back-end, scoring and
    metrics stages treat them like any other system.
    """
    import time

    from pyspeaker.data import read_utt2spk
    from pyspeaker.extraction import feature_statistics
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.store.embeddings import write_embeddings
    from pyspeaker.store.features import FeatureStore

    setup_logging()
    refuse_overlap({"--out": out_dir}, {"--features": features})
    t0 = time.time()
    store = FeatureStore(features)
    stats = feature_statistics(store)
    spk_file = store.dir / "utt2spk"
    write_embeddings(out_dir, list(store.ids), stats, utt2spk=read_utt2spk(spk_file) if spk_file.is_file() else None)
    get_logger("extract-stats").info("%d vectors of dim %d (mean + std of %d-dim features) in %.1f s -> %s",
                                     len(store), stats.shape[1], store.dim, time.time() - t0, out_dir)
