"""`pyspeaker verify`: are two recordings the same speaker? One score and one decision."""
from __future__ import annotations

import click

from pyspeaker.commands._front_end import (
    feature_config,
    front_end_options,
    load_options,
    model_options,
    model_path_option,
)


@click.command(name="verify")
@model_path_option
@click.argument("enroll", type=click.Path(dir_okay=False))
@click.argument("test", type=click.Path(dir_okay=False))
@click.option("--backend", "backend_dir", type=click.Path(file_okay=False), default=None,
              help="Back-end directory from 'train-backend' (cosine with its mean, or PLDA) to score with "
                   "(default: cosine of the two embeddings).")
@click.option("--threshold", type=float, default=None,
              help="Decide 'target' when the score is at least this (default: --threshold-from, else 0, the "
                   "decision point of calibrated log-likelihood ratios, with a warning).")
@click.option("--threshold-from", type=click.Path(dir_okay=False), default=None,
              help="metrics.json from 'compute-metrics' (same model and back-end): use its EER threshold.")
@front_end_options
@model_options
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def command(model_path, enroll, test, backend_dir, threshold, threshold_from,
            feat_conf, feat_type, vad, vad_conf, cmn, cmn_window, eval_frames, num_eval, vt_model, trainfunc,
            encoder_type, n_out, n_mels, log_input, device):
    """Score ENROLL against TEST (two audio files) and print '<score> target' or '<score> nontarget'.

    The exit status is 0 for either decision (1 only for bad input).
    """
    from pyspeaker.errors import ConfigError
    from pyspeaker.inference import load_model, read_threshold
    from pyspeaker.log import setup_logging
    from pyspeaker.training.distributed import pick_device

    setup_logging()
    if threshold is not None and threshold_from is not None:
        raise ConfigError("give --threshold or --threshold-from, not both")
    if threshold_from is not None:
        threshold = read_threshold(threshold_from)  # a bad file is refused before the model is loaded
    backend = None
    if backend_dir is not None:
        from pyspeaker.scoring.backend import load_backend

        backend = load_backend(backend_dir)[0]
    front_end = feature_config(feat_conf, feat_type, vad, vad_conf, cmn, cmn_window)
    model = load_model(model_path, device=pick_device(device), feature_config=front_end,
                       **load_options(eval_frames, num_eval, vt_model, trainfunc, encoder_type, n_out, n_mels,
                                      log_input))
    result = model.verify(enroll, test, threshold=threshold, backend=backend)
    click.echo(f"{result.score:.6f} {result.decision}")
