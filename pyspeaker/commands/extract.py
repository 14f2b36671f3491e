"""`pyspeaker extract`: stage 3, one embedding per utterance into xvector.{h5,scp,ark}."""
from __future__ import annotations

import click


@click.command(name="extract")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="pyspeaker checkpoint (e.g. exp/<name>/checkpoints/final.pt).")
@click.option("--features", required=True, type=click.Path(file_okay=False),
              help="Feature store directory of the set to embed (features/<feat-id>/<set>).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory; gets xvector.h5, xvector.scp and xvector.ark (replaced atomically).")
@click.option("--utt2spk", type=click.Path(dir_okay=False), default=None,
              help="Speakers of the utterances (default: the feature store's utt2spk): also write speaker means "
                   "spk_xvector.scp/ark and num_utts.ark as Kaldi's ivector-mean, and a copy of utt2spk.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
def command(checkpoint, features, out_dir, utt2spk, device, threads, progress):
    """Embed whole utterances (no random crop, no dither) with a trained model.

    The feature store must have been made with the same feature config as the training store.
    """
    import time
    from pathlib import Path

    import torch

    from pyspeaker.errors import DataError
    from pyspeaker.extraction import extract_store
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.store.embeddings import write_embeddings
    from pyspeaker.store.features import FeatureStore
    from pyspeaker.training.checkpoint import model_from_checkpoint
    from pyspeaker.data import read_utt2spk
    from pyspeaker.training.trainer import pick_device

    setup_logging()
    log = get_logger("extract")
    if threads:
        torch.set_num_threads(threads)
    model, ckpt = model_from_checkpoint(checkpoint)
    store = FeatureStore(features)
    if ckpt.get("feat_id") and store.feat_id and ckpt["feat_id"] != store.feat_id:
        raise DataError(f"features {store.feat_id} differ from the ones the model was trained on "
                        f"({ckpt['feat_id']}); make features with the training config", path=store.h5_path)
    t0 = time.time()
    ids, emb = extract_store(model, store, pick_device(device), progress=progress)
    spk_file = Path(utt2spk) if utt2spk else store.dir / "utt2spk"
    speakers = read_utt2spk(spk_file) if spk_file.is_file() else None
    write_embeddings(out_dir, ids, emb, utt2spk=speakers)
    log.info("%d embeddings of dim %d from %s (epoch %s) in %.1f s -> %s", len(ids), emb.shape[1], checkpoint,
             ckpt.get("epoch"), time.time() - t0, out_dir)
