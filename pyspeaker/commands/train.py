"""`pyspeaker train`: stage 2, train a speaker-embedding network from a feature store or from audio."""
from __future__ import annotations

import click

from pyspeaker.training.config import VT_ALIASES

_VT_HELP = {
    "model": "model.name (ResNetSE34L, ResNetSE34V2, ECAPA-TDNN, ...)",
    "encoder_type": "model.encoder_type (SAP, ASP, TAP, MAX, STATS)",
    "nOut": "model.nOut (embedding size)",
    "n_mels": "model.n_mels (waveform models; with a feature store it must equal the feature dimension)",
    "log_input": "model.log_input (True/False; waveform models)",
    "trainfunc": "loss.name (softmax, amsoftmax, aamsoftmax, angleproto, proto, ge2e, triplet, softmaxproto)",
    "scale": "loss.scale",
    "margin": "loss.margin",
    "nPerSpeaker": "data.nPerSpeaker (utterances of each speaker in a batch)",
    "batch_size": "data.batch_size (speakers per batch)",
    "max_frames": "data.crop_frames (training crop length in frames)",
    "max_seg_per_spk": "data.max_seg_per_spk",
    "nDataLoaderThread": "data.num_workers",
    "max_epoch": "train.max_epoch",
    "seed": "train.seed",
    "test_interval": "train.test_interval and optim.step_epochs (voxceleb_trainer decays the lr every test_interval epochs)",
    "optimizer": "optim.name (adam, sgd)",
    "lr": "optim.lr",
    "lr_decay": "optim.lr_decay",
    "weight_decay": "optim.weight_decay",
}


def _vt_options(f):
    """voxceleb_trainer's flag names as aliases of config keys (applied before --set)."""
    for flag in reversed(list(VT_ALIASES)):
        f = click.option(f"--{flag}", f"vt_{flag}", default=None, metavar="V",
                         help=f"voxceleb_trainer alias for --set {_VT_HELP[flag]}.")(f)
    return f


@click.command(name="train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Training YAML (sections model, loss, data, augment, optim, train, valid); see conf/*.yaml. "
                   "Default: the built-in defaults.")
@click.option("--features", default=None, type=click.Path(),
              help="Training features: a feature store made by make-features (features/<feat-id>/<set>), "
                   "or a Kaldi feats.scp (or a folder with feats.scp and utt2spk).")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False),
              help="Train from audio instead: a Kaldi data dir, features computed on the fly "
                   "(data.feat_conf) or by the network's waveform front-end (model.waveform=true).")
@click.option("--exp-dir", "--save_path", "exp_dir", required=True, type=click.Path(file_okay=False),
              help="Experiment directory for config.yaml, train.log, metrics.tsv and checkpoints/ "
                   "(--save_path: voxceleb_trainer's name).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=0.01 --set train.max_epoch=5 (repeatable).")
@click.option("--init-from", "init_from", default=None, type=click.Path(),
              help="Fine-tune: start from this model (a pyspeaker checkpoint, an experiment dir, or a model dir "
                   "of import-model). Its network and weights are used (the config's model section must be left "
                   "at the defaults or agree with it), with a new loss head for the new speakers. Its front-end "
                   "stays: a features model trains from a feature store with its feat-id or from audio "
                   "(--data-dir, its features computed on the fly, no data.feat_conf needed); a waveform model "
                   "from audio only. Freeze parts of it with --set train.freeze=[PREFIX,...] (prefixes of "
                   "named_parameters() names; frozen modules stay in eval mode). With --resume yes/auto a run "
                   "started from the same file (same sha256) continues from its epoch checkpoint.")
@click.option("--resume", type=click.Choice(["no", "auto", "yes"]), default="no", show_default=True,
              help="Continue from the latest epoch checkpoint in EXP_DIR: yes (fail if impossible), auto "
                   "(when one exists with the same settings and --init-from file, else start over), no.")
@click.option("--mixedprec", is_flag=True, default=False,
              help="Mixed precision (float16 autocast + gradient scaling) on CUDA; ignored with a warning on CPU.")
@click.option("--nClasses", "n_classes", type=int, default=None,
              help="voxceleb_trainer's --nClasses: checked against the number of speakers in the data (never needed).")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--progress/--no-progress", default=None, help="Progress bar per epoch (default: when on a terminal).")
@_vt_options
def command(config_path, features, data_dir, exp_dir, overrides, init_from, resume, mixedprec, n_classes, threads,
            progress, **vt):
    """Train a speaker-embedding network on random fixed-length crops, batches of distinct speakers.

    The number of speakers and the feature dimension come from the data. Writes EXP_DIR/config.yaml
    (merged config), train.log, metrics.tsv (loss, accuracy, lr, seconds per epoch, and validation
    EER/minDCF when valid.trials is set) and checkpoints/{init,epoch_NNNN,best,final}.pt. Uses CUDA
    when present, the CPU otherwise. Under torchrun (steps/train.sh --ngpu N / --nproc N) each
    process trains on its own share of every epoch (DDP) and the first one writes the files.

    Time budget: --set train.max_minutes=M stops training after M minutes of training (the epoch
    then running is closed as a partial one) and runs the lr and margin schedules over the M
    minutes instead of over train.max_epoch epochs (then an upper bound). What final.pt is:
    --set train.select=last (default), best (the epoch of lowest validation EER, needs valid.trials
    and train.test_interval) or average (the mean of the last train.average_last epochs).

    Fine-tuning: --init-from MODEL starts from a trained or imported model (checkpoints record
    init_from: its path and sha256); train.freeze keeps the parameters under the given name
    prefixes fixed (not in the optimiser; their modules in eval mode, so BatchNorm statistics stay).
    """
    import os

    # OpenMP threads that spin while they wait take the cores that the working threads need
    # whenever cores are shared (DataLoader workers, several torchrun processes, other jobs): a
    # training step then runs several times slower. Waiting threads sleep instead, unless the
    # user chose otherwise; set before torch loads OpenMP. (OMP_WAIT_POLICY=ACTIVE to undo.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import setup_logging
    from pyspeaker.training.config import alias_overrides, load_config
    from pyspeaker.training.trainer import train

    setup_logging()
    if threads:
        torch.set_num_threads(threads)
    if (features is None) == (data_dir is None):
        raise ConfigError("give the training data with --features STORE or --data-dir DIR (one of them)")
    refuse_overlap({"--exp-dir": exp_dir}, {"--features": features, "--data-dir": data_dir, "--config": config_path,
                                            "--init-from": init_from})
    extra = alias_overrides({k[len("vt_"):]: v for k, v in vt.items()})
    if mixedprec:
        extra.append("train.mixedprec=true")
    cfg = load_config(config_path, extra + list(overrides))
    final = train(cfg, features, exp_dir, progress=progress, data_dir=data_dir, resume=resume,
                  expected_classes=n_classes, init_from=init_from)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(str(final))
