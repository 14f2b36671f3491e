"""`pyspeaker voxceleb-eval`: evaluate a voxceleb_trainer checkpoint exactly as its ``--eval`` does."""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

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

    import torch

    from pyspeaker.compat import voxceleb_trainer as vt
    from pyspeaker.errors import ConfigError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
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
    trials, files, emb, scores = _evaluate(net, test_list, test_path, eval_frames, vt.TEST_NORMALIZE[trainfunc],
                                           pick_device(device), progress)
    log.info("%d files, %d trials in %.1f s", len(files), len(scores), time.time() - t0)
    if save_embeddings:
        _write_npz(save_embeddings, files, emb)
        log.info("wrote %s", save_embeddings)
    if save_scores:
        _write_scores(save_scores, scores, trials)
        log.info("wrote %s", save_scores)
    if trials.labels is None:
        log.warning("%s has no labels: no EER (voxceleb_trainer would draw random labels)", test_list)
        return
    eer, min_dcf = _metrics(scores, trials.labels, dcf_p_target, dcf_c_miss, dcf_c_fa, log)
    click.echo(f"EER {eer:.4f}")
    click.echo(f"MinDCF {min_dcf:.5f}")


def _read_ahead(fn, items: Sequence, depth: int = 4) -> Iterator:
    """``map(fn, items)`` with up to ``depth`` items read ahead in threads (soundfile releases the GIL)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        for item in it:
            yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()


def _evaluate(model, test_list, test_path, eval_frames: int, normalize: bool, device, progress):
    """voxceleb_trainer's ``evaluateFromList``: every listed file once (sorted), its crops through
    the model as one batch, then every trial scored. Returns (trials, files, raw embeddings
    float32 [files, num_eval, nOut], float32 scores in list order)."""
    import numpy as np
    from tqdm import tqdm

    from pyspeaker.audio import read_audio_file
    from pyspeaker.compat.voxceleb_trainer import NUM_EVAL, eval_input
    from pyspeaker.data.trials import read_trials
    from pyspeaker.extraction import embed_each
    from pyspeaker.log import get_logger
    from pyspeaker.scoring.crops import crop_scores

    trials = read_trials(test_list)
    files = sorted(set(trials.enroll) | set(trials.test))
    rates: set[int] = set()

    def load(name: str) -> np.ndarray:
        audio, rate = read_audio_file(os.path.join(test_path, name))  # joined as voxceleb_trainer does
        rates.add(rate)
        return eval_input(audio, eval_frames, NUM_EVAL)

    bar = tqdm(_read_ahead(load, files), total=len(files), unit="file", desc="embedding",
               disable=True if progress is False else None, leave=False, dynamic_ncols=True)
    emb = embed_each(model.to(device).eval(), bar, len(files), device)
    if emb is None:
        emb = np.empty((0, 1 if eval_frames == 0 else NUM_EVAL, 0), dtype=np.float32)
    if rates - {16000}:
        get_logger("voxceleb-eval").warning("sample rates %s found; voxceleb_trainer's models expect 16000 Hz "
                                            "audio and do not resample", sorted(rates))
    row = {f: i for i, f in enumerate(files)}
    rows_e = np.fromiter((row[f] for f in trials.enroll), np.int64, len(trials.enroll))
    rows_t = np.fromiter((row[f] for f in trials.test), np.int64, len(trials.test))
    return trials, files, emb, crop_scores(emb, rows_e, emb, rows_t, normalize)


def _write_npz(path, names: Iterable[str], embeddings) -> None:
    """An .npz (readable with ``numpy.load``) with one float32 array per name, written atomically,
    member by member: the names are file paths (slashes and all), which ``numpy.savez`` would take
    as keyword arguments."""
    import zipfile

    import numpy as np

    from pyspeaker.fileio import atomic_file

    with atomic_file(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in zip(names, embeddings):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(value, dtype=np.float32), allow_pickle=False)


def _write_scores(path, scores, trials) -> None:
    """'<score> <label> <enroll> <test>' per trial, in list order (label '-' for an unlabeled list)."""
    from pyspeaker.fileio import write_text_atomic

    labels = ["-"] * len(scores) if trials.labels is None else [str(int(v)) for v in trials.labels]
    write_text_atomic(path, "".join(f"{s:.6f} {lab} {e} {t}\n" for s, lab, e, t
                                    in zip(scores.tolist(), labels, trials.enroll, trials.test)))


def _metrics(scores, labels, p_target: float, c_miss: float, c_fa: float, log) -> tuple[float, float]:
    """voxceleb_trainer's EER (percent) and minDCF; pyspeaker's tie-aware ones go to the log."""
    import numpy as np

    from pyspeaker.errors import DataError, require_finite
    from pyspeaker.metrics import compute_eer, compute_min_dcf, kaldi_min_dcf, voxceleb_trainer_eer

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise DataError("the trial list needs both target (1) and non-target (0) trials for an EER")
    require_finite(scores, "trial scores")
    tgt, non = scores[labels], scores[~labels]
    eer = voxceleb_trainer_eer(tgt, non) * 100
    min_dcf, _ = kaldi_min_dcf(scores, labels, p_target, c_miss, c_fa)
    eer_interp, _ = compute_eer(tgt, non)
    dcf_tie, _ = compute_min_dcf(tgt, non, p_target, c_miss, c_fa)
    log.info("pyspeaker.metrics (tie-aware, interpolated): EER %.4f %%, minDCF %.5f (p_target %g)",
             eer_interp * 100, dcf_tie, p_target)
    return eer, min_dcf
