"""`pyspeaker voxceleb-eval`: evaluate a voxceleb_trainer checkpoint exactly as its ``--eval`` does."""
from __future__ import annotations

import click

_VT_MODELS = ("ResNetSE34L", "ResNetSE34V2", "ResNetSE34Half", "VGGVox")
_VT_LOSSES = ("softmax", "amsoftmax", "aamsoftmax", "angleproto", "softmaxproto", "ge2e", "triplet", "proto")


@click.command(name="voxceleb-eval")
@click.option("--initial_model", required=True, type=click.Path(dir_okay=False),
              help="voxceleb_trainer checkpoint (.model), any of its formats.")
@click.option("--model", required=True, type=click.Choice(_VT_MODELS),
              help="voxceleb_trainer model name the checkpoint was trained with.")
@click.option("--encoder_type", default="SAP", show_default=True, type=click.Choice(("SAP", "ASP", "TAP", "MAX")),
              help="Pooling (SAP/ASP for the ResNets; SAP/TAP/MAX for VGGVox).")
@click.option("--trainfunc", required=True, type=click.Choice(_VT_LOSSES),
              help="Loss it was trained with; decides whether embeddings are L2-normalised before scoring "
                   "(all but proto).")
@click.option("--nOut", "nOut", default=512, show_default=True, type=int, help="Embedding size.")
@click.option("--n_mels", default=40, show_default=True, type=int,
              help="Mel bins of the front-end (ignored for VGGVox, which has 40).")
@click.option("--log_input", default=False, show_default=True, type=click.BOOL,
              help="Log mel energies (True/False). voxceleb_trainer's own parser turns any value, even "
                   "'False', into True; here False means False.")
@click.option("--eval_frames", default=300, show_default=True, type=click.IntRange(min=0),
              help="Frames per evaluation crop (crop = frames*160+240 samples); 0 = the whole file as one "
                   "crop (voxceleb_trainer cannot score that; here it is one embedding per file).")
@click.option("--test_list", default="data/test_list.txt", show_default=True, type=click.Path(dir_okay=False),
              help="Trial list: 'label enroll test' lines (VoxCeleb) or Kaldi trials.")
@click.option("--test_path", default="data/voxceleb1", show_default=True, type=click.Path(file_okay=False),
              help="Directory the list's paths are relative to.")
@click.option("--dcf_p_target", default=0.05, show_default=True, type=float, help="Prior of a target trial for MinDCF.")
@click.option("--dcf_c_miss", default=1.0, show_default=True, type=float, help="Cost of a miss for MinDCF.")
@click.option("--dcf_c_fa", default=1.0, show_default=True, type=float, help="Cost of a false alarm for MinDCF.")
@click.option("--save-scores", "save_scores", type=click.Path(dir_okay=False),
              help="Write '<score> <label> <enroll> <test>' per trial, in list order (label '-' if none).")
@click.option("--save-embeddings", "save_embeddings", type=click.Path(dir_okay=False),
              help="Write an .npz with one raw [num_eval, nOut] float32 array per file (key: the path as in the list).")
@click.option("--eval", "eval_flag", is_flag=True, help="Accepted for voxceleb_trainer compatibility (always on).")
@click.option("--save_path", default=None, help="Accepted for voxceleb_trainer compatibility; not used.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
def command(initial_model, model, encoder_type, trainfunc, nOut, n_mels, log_input, eval_frames, test_list,
            test_path, dcf_p_target, dcf_c_miss, dcf_c_fa, save_scores, save_embeddings, eval_flag, save_path,
            device, threads, progress):
    """Evaluate a voxceleb_trainer checkpoint as `trainSpeakerNet.py --eval` does.

    Every file in the list is cut into 10 evenly spaced crops of --eval_frames (files no longer
    than a crop are first extended by repeating them), the crops go through the model as one
    batch, and a trial's score is minus the mean of the 10 x 10 Euclidean distances between the
    two files' (L2-normalised, unless --trainfunc proto) crop embeddings. Loading is strict: a
    checkpoint that does not match the flags is refused, naming the first mismatching key.

    Prints "EER <percent>" and "MinDCF <value>" computed as voxceleb_trainer does (EER from
    sklearn's ROC points: max(FPR, FNR) where |FNR - FPR| is smallest, no interpolation), so the
    numbers agree with the lab's; the log also gives pyspeaker's tie-aware interpolated EER and
    minDCF (pyspeaker.metrics), which can be slightly lower.
    """
    import time

    import numpy as np
    import torch

    from pyspeaker.compat import voxceleb_trainer as vt
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap, write_text_atomic
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.metrics import compute_eer, compute_min_dcf
    from pyspeaker.models import count_parameters
    from pyspeaker.training.distributed import pick_device

    setup_logging()
    log = get_logger("voxceleb-eval")
    refuse_overlap({"--save-scores": save_scores, "--save-embeddings": save_embeddings},
                   {"--initial_model": initial_model, "--test_list": test_list, "--test_path": test_path})
    if threads:
        torch.set_num_threads(threads)
    if not 0.0 < dcf_p_target < 1.0:
        raise ConfigError(f"--dcf_p_target must be in (0, 1), got {dcf_p_target}")
    if model == "VGGVox" and n_mels != vt.VGGVOX_MELS:
        log.info("VGGVox has %d mel bins; --n_mels %d is ignored, as in voxceleb_trainer", vt.VGGVOX_MELS, n_mels)
    net = vt.load_model(initial_model, model, encoder_type, nOut, n_mels, log_input)
    log.info("Model %s has %d parameters; test list %s", model, count_parameters(net), test_list)
    t0 = time.time()
    res = vt.evaluate(net, test_list, test_path, eval_frames, vt.TEST_NORMALIZE[trainfunc],
                      device=pick_device(device), progress=progress)
    log.info("%d files, %d trials in %.1f s", len(res.files), len(res.scores), time.time() - t0)
    if save_embeddings:
        vt.write_embeddings_npz(save_embeddings, res.files, res.embeddings)
        log.info("wrote %s", save_embeddings)
    if save_scores:
        labels = ["-"] * len(res.scores) if res.labels is None else [str(int(v)) for v in res.labels]
        write_text_atomic(save_scores, "".join(f"{s:.6f} {lab} {e} {t}\n" for s, lab, e, t
                                               in zip(res.scores.tolist(), labels, res.enroll, res.test)))
        log.info("wrote %s", save_scores)
    if res.labels is None:
        log.warning("%s has no labels: no EER (voxceleb_trainer would draw random labels)", test_list)
        return
    eer = vt.voxceleb_trainer_eer(res.scores, res.labels)
    min_dcf = vt.voxceleb_trainer_min_dcf(res.scores, res.labels, dcf_p_target, dcf_c_miss, dcf_c_fa)
    tgt, non = res.scores[res.labels == 1], res.scores[res.labels == 0]
    eer_interp, _ = compute_eer(tgt, non)
    dcf_tie, _ = compute_min_dcf(tgt, non, dcf_p_target, dcf_c_miss, dcf_c_fa)
    log.info("pyspeaker.metrics (tie-aware, interpolated): EER %.4f %%, minDCF %.5f (p_target %g)",
             eer_interp * 100, dcf_tie, dcf_p_target)
    click.echo(f"EER {eer:.4f}")
    click.echo(f"MinDCF {min_dcf:.5f}")
