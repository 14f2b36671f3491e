"""`pyspeaker extract`: stage 3, one embedding per utterance into xvector.{h5,scp,ark}."""
from __future__ import annotations

import click


@click.command(name="extract")
@click.option("--checkpoint", required=True, type=click.Path(),
              help="pyspeaker checkpoint (e.g. exp/<name>/checkpoints/final.pt), experiment dir or model dir "
                   "from import-model.")
@click.option("--features", type=click.Path(file_okay=False), default=None,
              help="Feature store directory of the set to embed (features/<feat-id>/<set>).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Instead of --features: a Kaldi data dir, embedded from its audio through the model's own "
                   "front-end (any model: waveform front-ends, imported models), as 'pyspeaker embed --data-dir'.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory; gets xvector.h5, xvector.scp and xvector.ark (replaced atomically).")
@click.option("--utt2spk", type=click.Path(dir_okay=False), default=None,
              help="Speakers of the utterances (default: the feature store's utt2spk): also write speaker means "
                   "spk_xvector.scp/ark and num_utts.ark as Kaldi's ivector-mean, and a copy of utt2spk.")
@click.option("--eval-frames", type=click.IntRange(0), default=0, show_default=True,
              help="voxceleb_trainer's evaluation mode: embed --num-eval evenly spaced crops of this many "
                   "frames per utterance (0: the whole utterance). Keeps the crops for 'score --crop-scoring'.")
@click.option("--num-eval", type=click.IntRange(1), default=10, show_default=True,
              help="Crops per utterance with --eval-frames.")
@click.option("--nj", type=click.IntRange(1), default=1, show_default=True,
              help="Parallel jobs (each embeds a contiguous part of the utterances; one log per job).")
@click.option("--cmd", default="local", show_default=True,
              help="Job launcher with --nj: 'local', 'slurm [sbatch options]' (one Slurm job per job, e.g. 'slurm -p "
                   "cpu --mem=4G'), or a prefix such as 'srun --ntasks=1'.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
@click.option("--job-range", hidden=True, default=None)
@click.option("--job-out", hidden=True, type=click.Path(dir_okay=False), default=None)
@click.pass_context
def command(ctx, checkpoint, features, data_dir, out_dir, utt2spk, eval_frames, num_eval, nj, cmd, device, threads, progress,
            job_range, job_out):
    """Embed whole utterances (no random crop, no dither) with a trained model.

    The feature store must have been made with the same feature config as the training store.
    The same utterance gets the same embedding whatever the batching or the number of jobs.
    A model that computes its features from the samples (model.waveform, imported models) takes
    --data-dir instead.
    """
    if (features is None) == (data_dir is None):
        raise click.UsageError("give --features (a feature store) or --data-dir (audio), exactly one")
    if data_dir is not None:
        if nj > 1 or utt2spk:
            raise click.UsageError("--nj and --utt2spk go with --features; --data-dir embeds in one job with "
                                   "the data dir's utt2spk")
        from pyspeaker.commands import embed

        return ctx.invoke(embed.command, model_path=checkpoint, data_dir=data_dir, out_dir=out_dir,
                          eval_frames=eval_frames or None, num_eval=num_eval, device=device, threads=threads)
    import sys
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from pyspeaker.data import read_utt2spk
    from pyspeaker.errors import DataError
    from pyspeaker.extraction import extract_store
    from pyspeaker.fileio import refuse_overlap, scratch_dir
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.parallel import parse_cmd, run_jobs
    from pyspeaker.store.embeddings import write_embeddings
    from pyspeaker.store.features import FeatureStore
    from pyspeaker.inference import resolve_checkpoint
    from pyspeaker.training.checkpoint import model_from_checkpoint
    from pyspeaker.training.distributed import pick_device

    setup_logging()
    log = get_logger("extract")
    if not job_out:
        refuse_overlap({"--out": out_dir}, {"--checkpoint": checkpoint, "--features": features, "--utt2spk": utt2spk})
        if nj > 1:
            parse_cmd(cmd)  # a bad launcher is refused before any work
    if threads:
        torch.set_num_threads(threads)
    checkpoint = resolve_checkpoint(checkpoint)
    model, ckpt = model_from_checkpoint(checkpoint)
    if ckpt["model_options"].get("waveform"):
        raise DataError("this model computes its features from the audio (a waveform front-end): embed a data dir "
                        "with --data-dir instead of --features", path=checkpoint)
    store = FeatureStore(features)
    want_dim = ckpt["model_options"].get("n_mels")
    if want_dim is not None and not ckpt["model_options"].get("waveform") and want_dim != store.dim:
        raise DataError(f"features of dim {store.dim}, but the model {checkpoint} takes dim {want_dim}; "
                        "make features with the training config", path=store.h5_path)
    if ckpt.get("feat_id") and store.feat_id and ckpt["feat_id"] != store.feat_id:
        raise DataError(f"features {store.feat_id} differ from the ones the model was trained on "
                        f"({ckpt['feat_id']}); make features with the training config", path=store.h5_path)
    mode = dict(eval_frames=eval_frames or None, num_eval=num_eval)
    if job_out:  # one job of a parallel run: embed utterances [lo, hi) into an .npz
        lo, hi = map(int, job_range.split(":"))
        result = extract_store(model, store, pick_device(device), progress=False, utts=range(lo, hi), **mode)
        np.savez(job_out, emb=result[1], **({"crops": result[2]} if eval_frames else {}))
        return
    t0 = time.time()
    if nj == 1:
        result = extract_store(model, store, pick_device(device), progress=progress, **mode)
        emb, crops = result[1], (result[2] if eval_frames else None)
    else:
        bounds = np.linspace(0, len(store), min(nj, len(store)) + 1).astype(int)
        logs_dir = Path(out_dir).parent / "log"
        with scratch_dir(out_dir) as tmp:
            parts = [Path(tmp) / f"part.{j}.npz" for j in range(1, len(bounds))]
            jobs = [[sys.executable, "-m", "pyspeaker", "extract", "--checkpoint", str(checkpoint),
                     "--features", str(features), "--out", str(out_dir), "--device", device, "--threads", "1",
                     "--eval-frames", str(eval_frames), "--num-eval", str(num_eval),
                     "--job-range", f"{bounds[j - 1]}:{bounds[j]}", "--job-out", str(p)]
                    for j, p in enumerate(parts, 1)]
            run_jobs(cmd, jobs, [logs_dir / f"extract.{Path(out_dir).name}.{j}.log" for j in range(1, len(bounds))])
            loaded = [np.load(p) for p in parts]
            emb = np.concatenate([z["emb"] for z in loaded])
            crops = np.concatenate([z["crops"] for z in loaded]) if eval_frames else None
    spk_file = Path(utt2spk) if utt2spk else store.dir / "utt2spk"
    speakers = read_utt2spk(spk_file) if spk_file.is_file() else None
    write_embeddings(out_dir, list(store.ids), emb, utt2spk=speakers, crops=crops)
    log.info("%d embeddings of dim %d from %s (epoch %s)%s in %.1f s -> %s", len(store), emb.shape[1], checkpoint,
             ckpt.get("epoch"), f", {num_eval} crops of {eval_frames} frames each" if eval_frames else "",
             time.time() - t0, out_dir)
