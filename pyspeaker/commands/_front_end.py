"""Options shared by `embed` and `verify`: the feature settings of a model trained from a Kaldi
feats.scp, which does not say how its features were made (as make-features takes them), the
options of a voxceleb_trainer ``.model`` and voxceleb_trainer's evaluation crops."""
from __future__ import annotations

import click

# voxceleb-eval's lists (pyspeaker.compat.voxceleb_trainer imports torch: not at --help time)
from pyspeaker.commands.voxceleb_eval import _VT_LOSSES, _VT_MODELS


def front_end_options(f):
    """Add --feat-conf, --type, --vad/--no-vad, --vad-conf, --cmn and --cmn-window to a command."""
    options = [
        click.option("--feat-conf", type=click.Path(dir_okay=False), default=None,
                     help="Only for a model trained from a Kaldi feats.scp (which does not say how its features "
                          "were made): the Kaldi feature config, with the --vad / --cmn options below, as "
                          "make-features takes them. Other models carry their front-end."),
        click.option("--type", "feat_type", type=click.Choice(["fbank", "mfcc", "logmel"]), default=None,
                     help="With --feat-conf: the feature type (default: from its file name)."),
        click.option("--vad/--no-vad", default=False, show_default=True, help="With --feat-conf: energy VAD."),
        click.option("--vad-conf", type=click.Path(dir_okay=False), default=None,
                     help="With --feat-conf: compute-vad options."),
        click.option("--cmn", type=click.Choice(["none", "utterance", "sliding"]), default="none",
                     show_default=True, help="With --feat-conf: mean normalisation."),
        click.option("--cmn-window", type=int, default=300, show_default=True,
                     help="With --feat-conf: sliding CMN window in frames."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def feature_config(feat_conf, feat_type, vad, vad_conf, cmn, cmn_window):
    """The FeatureConfig the options give, or None without --feat-conf (refusing the others alone)."""
    if feat_conf is None:
        alone = [n for n, used in (("--type", feat_type), ("--vad", vad), ("--vad-conf", vad_conf),
                                   ("--cmn", cmn != "none"), ("--cmn-window", cmn_window != 300)) if used]
        if alone:
            raise click.UsageError(f"{alone[0]} only goes with --feat-conf")
        return None
    from pyspeaker.features import load_feature_config

    return load_feature_config(feat_conf, kind=feat_type, vad_conf=vad_conf, vad=vad, cmn=cmn,
                               cmn_window=cmn_window)


def vt_options(f):
    """Add the options of a voxceleb_trainer .model (--vt-model, --trainfunc, --encoder-type, --nOut,
    --n-mels, --log-input): its trainSpeakerNet.py flags, which the file does not record."""
    options = [
        click.option("--vt-model", type=click.Choice(_VT_MODELS), default=None,
                     help="For a voxceleb_trainer .model: the --model it was trained with."),
        click.option("--trainfunc", type=click.Choice(_VT_LOSSES), default=None,
                     help="For a voxceleb_trainer .model: its --trainfunc (decides the crop normalisation)."),
        click.option("--encoder-type", type=click.Choice(("SAP", "ASP", "TAP", "MAX")), default=None,
                     help="For a voxceleb_trainer .model: its --encoder_type (default SAP)."),
        click.option("--nOut", "n_out", type=int, default=None,
                     help="For a voxceleb_trainer .model: its --nOut (default 512)."),
        click.option("--n-mels", type=int, default=None,
                     help="For a voxceleb_trainer .model: its --n_mels (default 40)."),
        click.option("--log-input", type=click.BOOL, default=None,
                     help="For a voxceleb_trainer .model: its --log_input, True or False (default False)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def vt_keywords(vt_model, trainfunc, encoder_type, n_out, n_mels, log_input) -> dict:
    """The voxceleb_trainer flags given with :func:`vt_options`, as load_model / import keywords."""
    vt = {"model": vt_model, "trainfunc": trainfunc, "encoder_type": encoder_type, "nOut": n_out,
          "n_mels": n_mels, "log_input": log_input}
    return {k: v for k, v in vt.items() if v is not None}


def model_options(f):
    """Add the crop-mode options (--eval-frames, --num-eval) and :func:`vt_options`."""
    options = [
        click.option("--eval-frames", type=click.IntRange(0), default=None,
                     help="voxceleb_trainer's evaluation: --num-eval evenly spaced crops of this many frames per "
                          "utterance, scored by their mean distance (default: the whole utterance; 300 for a "
                          "voxceleb_trainer model, where 0 is the whole file as one crop)."),
        click.option("--num-eval", type=click.IntRange(1), default=10, show_default=True,
                     help="Crops per utterance with --eval-frames."),
    ]
    f = vt_options(f)
    for option in reversed(options):
        f = option(f)
    return f


def load_options(eval_frames, num_eval, vt_model, trainfunc, encoder_type, n_out, n_mels, log_input) -> dict:
    """load_model keywords from the options of :func:`model_options`."""
    out = vt_keywords(vt_model, trainfunc, encoder_type, n_out, n_mels, log_input)
    out.update(eval_frames=eval_frames, num_eval=num_eval)
    return out


# --model of the commands that run a trained model (embed, verify)
model_path_option = click.option(
    "--model", "model_path", required=True, type=click.Path(),
    help="Trained model: a pyspeaker checkpoint (exp/<name>/checkpoints/final.pt), an experiment dir, a "
         "model dir from import-model, or a voxceleb_trainer .model (with --vt-model, --trainfunc, ...).")
