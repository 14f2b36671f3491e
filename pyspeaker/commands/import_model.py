"""`pyspeaker import-model`: a pretrained model of another toolkit as a pyspeaker model directory."""
from __future__ import annotations

import click

from pyspeaker.commands._front_end import vt_keywords, vt_options


@click.command(name="import-model")
@click.option("--from", "toolkit", required=True,
              type=click.Choice(["wespeaker", "speechbrain", "resemblyzer", "voxceleb_trainer"]),
              help="The toolkit that made the model.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="The model file: WeSpeaker avg_model.pt / model_N.pt, SpeechBrain embedding_model.ckpt, "
                   "a voxceleb_trainer .model; for Resemblyzer optional (default: the pretrained.pt inside the "
                   "installed resemblyzer package).")
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="WeSpeaker: the model's config.yaml (model, model_args, fbank_args; default: a config.yaml "
                   "beside the checkpoint or above its models/ folder); SpeechBrain: its hyperparams.yaml "
                   "(default: spkrec-ecapa-voxceleb's settings).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model directory to write (final.pt + source.json), used as --model / --pretrained / "
                   "--init-from anywhere a trained model goes.")
@click.option("--embedding-norm", type=click.Path(dir_okay=False), default=None,
              help="SpeechBrain: its mean_var_norm_emb.ckpt, to subtract the embedding mean as "
                   "encode_batch(normalize=True) does (SpeechBrain's verification leaves it out).")
@vt_options
def command(toolkit, checkpoint, config, out, embedding_norm, vt_model, trainfunc, encoder_type, n_out, n_mels, log_input):
    """Make a pyspeaker model of a WeSpeaker, SpeechBrain, Resemblyzer or voxceleb_trainer model.

    Strict: every tensor of the source goes to exactly one tensor of the same shape in pyspeaker's
    own network for that family, or the command fails naming the key and both shapes. The model's
    front-end (WeSpeaker's Kaldi fbank and mean subtraction, SpeechBrain's Fbank and sentence mean
    normalisation, Resemblyzer's mel windows, voxceleb_trainer's log mel) comes with it, so
    `pyspeaker embed --model DIR`, `verify`, `export`, `train --init-from DIR` and
    `./run.sh --systems pretrained --pretrained DIR` use it as they use a trained model.
    """
    from pyspeaker.compat.importing import import_model, write_model_dir
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging

    setup_logging()
    log = get_logger("pyspeaker.commands.import_model")
    inputs = {k: v for k, v in (("--checkpoint", checkpoint), ("--config", config),
                                ("--embedding-norm", embedding_norm)) if v is not None}
    refuse_overlap({"--out": out}, inputs)
    vt = vt_keywords(vt_model, trainfunc, encoder_type, n_out, n_mels, log_input)
    imported = import_model(toolkit, checkpoint, config, embedding_norm=embedding_norm, **vt)
    write_model_dir(imported, out)
    n = sum(v.numel() for v in imported.state.values() if v.is_floating_point())
    log.info("imported %s %s (%d tensors, %s values%s) -> %s", toolkit, imported.model_options["name"],
             len(imported.state), f"{n:,}",
             f"; left out: {', '.join(sorted(imported.dropped))}" if imported.dropped else "", out)
    click.echo(str(out))
