"""`pyspeaker embed`: embeddings of audio files, a wav.scp or a data dir, straight from a model."""
from __future__ import annotations

import click

from pyspeaker.commands._front_end import (
    feature_config,
    front_end_options,
    load_options,
    model_options,
    model_path_option,
)


@click.command(name="embed")
@model_path_option
@click.argument("wavs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--wav-scp", type=click.Path(dir_okay=False), default=None,
              help="Kaldi wav.scp (<utt> <file, 'cmd |' pipe or ark:offset>) of the utterances to embed.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Kaldi data dir (wav.scp, utt2spk, optional segments): also writes the speaker means.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory; gets xvector.h5, xvector.scp and xvector.ark, as 'extract' writes them "
                   "(replaced atomically). Audio files given as arguments are named by their file name without "
                   "extension.")
@front_end_options
@model_options
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
def command(model_path, wavs, wav_scp, data_dir, out_dir,
            feat_conf, feat_type, vad, vad_conf, cmn, cmn_window, eval_frames, num_eval, vt_model, trainfunc,
            encoder_type, n_out, n_mels, log_input, device, threads):
    """Embed audio with a trained model: its own front-end (features, VAD, CMN) on the audio, then
    the network on the whole utterance, as 'extract' does on a feature store.

    Give the audio as WAV arguments, as --wav-scp or as --data-dir (exactly one of these). Audio at
    another sample rate than the model's is resampled.
    """
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from pyspeaker.errors import ConfigError, DataError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.inference import crop_mean, load_model
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.store.embeddings import write_embeddings
    from pyspeaker.training.distributed import pick_device

    setup_logging()
    log = get_logger("embed")
    given = [n for n, v in (("WAV arguments", wavs), ("--wav-scp", wav_scp), ("--data-dir", data_dir)) if v]
    if len(given) != 1:
        raise click.UsageError("give the audio as WAV arguments, --wav-scp or --data-dir (exactly one)"
                               + (f"; got {' and '.join(given)}" if given else ""))
    refuse_overlap({"--out": out_dir}, {"--model": model_path, "--wav-scp": wav_scp, "--data-dir": data_dir,
                                        "--feat-conf": feat_conf, "--vad-conf": vad_conf,
                                        **{f"audio {w}": w for w in wavs}})
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    front_end = feature_config(feat_conf, feat_type, vad, vad_conf, cmn, cmn_window)
    model = load_model(model_path, device=pick_device(device), feature_config=front_end,
                       **load_options(eval_frames, num_eval, vt_model, trainfunc, encoder_type, n_out, n_mels,
                                      log_input))
    speakers = None

    def embed(x, rate=None):
        if not model.crop_mode:
            return model.embed(x, rate)
        crops = model.embed_crops(x, rate)
        return crop_mean(crops), crops

    def embed_one(utt: str, fn, where: Path | str | None, line: int | None = None):
        try:
            return fn()
        except DataError as e:
            if e.path is not None or where is None:
                raise
            raise DataError(f"{utt}: {e.message}", path=where, line=line) from None

    if wavs:
        ids = [Path(w).stem for w in wavs]
        seen: dict[str, str] = {}
        for w, u in zip(wavs, ids):
            if u in seen:
                raise ConfigError(f"two audio files would both be named {u!r}: {seen[u]} and {w}; "
                                  "use --wav-scp to name them")
            seen[u] = w
        rows = [embed_one(u, lambda w=w: embed(w), w) for u, w in zip(ids, wavs)]
    elif wav_scp:
        from pyspeaker.audio import load_audio
        from pyspeaker.data.tables import read_table

        table = read_table(wav_scp, max_fields=None, rest_of_line=True, form="<utt> <audio>")
        if not table:
            raise DataError("wav.scp is empty", path=wav_scp)
        ids, rows = [], []
        for n, utt, entry in table:
            def one(entry=entry, n=n):
                samples, rate = load_audio(entry, path_for_errors=wav_scp, line=n)
                return embed(samples, rate)

            ids.append(utt)
            rows.append(embed_one(utt, one, wav_scp, n))
    else:
        from pyspeaker.audio import iter_data_dir_audio
        from pyspeaker.data import DataDir

        data = DataDir.load(data_dir)
        ids, rows = [], []
        for utt, samples, rate in iter_data_dir_audio(data):
            ids.append(utt)
            rows.append(embed_one(utt, lambda samples=samples, rate=rate: embed(samples, rate), data.file("wav.scp"),
                                  data.line_of("wav.scp", utt) if data.segments is None else None))
        speakers = dict(data.utt2spk)
    crops = None
    if model.crop_mode:  # rows are (vector, crops) pairs: keep the crops for 'score --crop-scoring'
        emb, crops = np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])
    else:
        emb = np.stack(rows)
    write_embeddings(out_dir, ids, emb, utt2spk=speakers, crops=crops)
    log.info("%d embeddings of dim %d from %s in %.1f s -> %s", len(ids), emb.shape[1], model.path,
             time.time() - t0, out_dir)
