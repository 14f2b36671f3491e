"""`pyspeaker make-features`: stage 1, a data dir's audio -> a reusable feature store."""
from __future__ import annotations

import click


def _conf_args(conf, kind, vad, vad_conf, cmn, cmn_window) -> list[str]:
    """The feature options as command-line arguments (handed on to parallel jobs unchanged)."""
    args = ["--conf", conf, "--cmn", cmn, "--cmn-window", str(cmn_window), "--vad" if vad else "--no-vad"]
    if kind:
        args += ["--type", kind]
    if vad_conf:
        args += ["--vad-conf", vad_conf]
    return args


@click.command(name="make-features")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="Kaldi data dir (wav.scp, utt2spk, optional segments).")
@click.option("--conf", required=True, type=click.Path(dir_okay=False),
              help="Kaldi-style option file: conf/fbank.conf, conf/mfcc.conf or conf/logmel.conf.")
@click.option("--type", "kind", type=click.Choice(["fbank", "mfcc", "logmel"]), default=None,
              help="Feature type (default: from the conf file name).")
@click.option("--vad/--no-vad", default=False, show_default=True,
              help="Keep only frames that Kaldi's energy VAD marks as speech.")
@click.option("--vad-conf", type=click.Path(dir_okay=False), default=None, help="compute-vad options (conf/vad.conf).")
@click.option("--cmn", type=click.Choice(["none", "utterance", "sliding"]), default="none", show_default=True,
              help="Mean normalisation: none, per utterance, or Kaldi's sliding window (apply-cmvn-sliding).")
@click.option("--cmn-window", type=int, default=300, show_default=True, help="Sliding CMN window in frames.")
@click.option("--features-root", default="features", show_default=True, type=click.Path(file_okay=False),
              help="Stores go to FEATURES_ROOT/<feat-id>/<set name>/.")
@click.option("--name", default=None, help="Set name in the store path (default: the data dir's name).")
@click.option("--format", "fmt", type=click.Choice(["hdf5", "ark"]), default="hdf5", show_default=True,
              help="ark also writes Kaldi feats.scp/feats.ark next to the HDF5 store.")
@click.option("--compress/--no-compress", default=False, help="With --format ark: Kaldi-compressed matrices.")
@click.option("--nj", type=click.IntRange(1), default=1, show_default=True, help="Number of parallel jobs (one log per job).")
@click.option("--cmd", default="local", show_default=True,
              help="Job launcher: 'local', 'slurm [sbatch options]' (one Slurm job per job, e.g. 'slurm -p cpu "
                   "--mem=4G'), or a prefix such as 'srun --ntasks=1' put before each job.")
@click.option("--force", is_flag=True, help="Recompute even if an up-to-date store exists.")
@click.option("--print-path", is_flag=True, help="Only print where the store is (or would be) and exit.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
@click.option("--job-utts", hidden=True, type=click.Path(dir_okay=False))
@click.option("--job-out", hidden=True, type=click.Path(dir_okay=False))
def command(data_dir, conf, kind, vad, vad_conf, cmn, cmn_window, features_root, name, fmt, compress, nj, cmd,
            force, print_path, progress, job_utts, job_out):
    """Compute fbank / MFCC / log-mel features of DATA_DIR into an HDF5 feature store.

    The store path is FEATURES_ROOT/<feat-id>/<set>, where feat-id is derived from every option
    that changes the features: an unchanged config reuses the store, a changed one gets a new one.
    A store whose manifest matches the data dir is skipped (use --force to recompute). The store
    path is printed on stdout when done.
    """
    from pathlib import Path

    from pyspeaker.features import load_feature_config
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.parallel import parse_cmd
    from pyspeaker.features.store_builder import build_store, compute_part, is_up_to_date, store_dir
    from pyspeaker.log import get_logger, setup_logging

    setup_logging()
    log = get_logger("make-features")
    cfg = load_feature_config(conf, kind=kind, vad_conf=vad_conf, vad=vad, cmn=cmn, cmn_window=cmn_window)
    data_dir = Path(data_dir)
    if job_out:  # one job of a parallel run (launched by build_store)
        import torch

        torch.set_num_threads(1)
        utts = Path(job_utts).read_text().split()
        n, frames = compute_part(cfg, data_dir, utts, Path(job_out), progress=False)
        log.info("job done: %d utterances, %d frames -> %s", n, frames, job_out)
        return
    out = store_dir(Path(features_root), cfg, data_dir, name)
    if print_path:
        click.echo(str(out))
        return
    refuse_overlap({"the store": out}, {"--data-dir": data_dir, "--conf": conf, "--vad-conf": vad_conf})
    if nj > 1:
        parse_cmd(cmd)  # a bad launcher is refused before any work
    if not force and is_up_to_date(out, cfg, data_dir):
        log.info("%s is up to date with %s; skipping (use --force to recompute)", out, data_dir)
        click.echo(str(out))
        return
    log.info("computing %s features (dim %d) of %s -> %s", cfg.kind, cfg.dim, data_dir, out)
    m = build_store(cfg, data_dir, out, nj=nj, cmd=cmd, write_ark=fmt == "ark", compress=compress,
                    conf_args=_conf_args(conf, kind, vad, vad_conf, cmn, cmn_window), progress=progress)
    log.info("wrote %d utterances, %d frames in %.1f s", m["num_utts"], m["num_frames"], m["seconds"])
    click.echo(str(out))
