"""``pyspeaker prepare-voxceleb``: VoxCeleb1/2, MUSAN and RIRS_NOISES -> Kaldi data dirs and trials.

Sub-commands (the voxceleb recipe's stage 0 runs them through local/voxceleb/):
``check`` (the download step: says what is missing and where to get it), ``convert`` (VoxCeleb2
m4a -> wav once, resumable), ``data`` (data dirs + trials), ``trials`` (one list),
``augment`` (MUSAN and RIR data dirs).
"""
from __future__ import annotations

import sys

import click

_DIR = click.Path(file_okay=False)


def _print_sets(sets) -> None:
    for s in sets:
        click.echo(f"{s.path}: {s.num_utts} utterances, {s.num_speakers} speakers")


def _print_trials(reports) -> None:
    # count and missing-utterance warnings were logged (stderr) as they were found
    for r in reports:
        click.echo(f"{r.out}: {r.num_trials} trials ({r.num_target} target) from {r.source}")


@click.group(name="prepare-voxceleb")
def command() -> None:
    """Prepare VoxCeleb1/2 (+ MUSAN, RIRS_NOISES) as Kaldi data dirs and trials."""
    from pyspeaker.log import setup_logging

    setup_logging()


def _refuse_overlap(data_root, set_names, inputs) -> None:
    """The data dirs this command writes under --out must not be (or hold) a corpus it reads."""
    from pathlib import Path

    from pyspeaker.fileio import refuse_overlap

    refuse_overlap({f"--out ({name})": Path(data_root) / name for name in set_names}, inputs)


@command.command(name="check")
@click.option("--vox1-dir", type=_DIR, default=None, help="VoxCeleb1 (wav/idNNNNN/<video>/NNNNN.wav).")
@click.option("--vox2-dir", type=_DIR, default=None, help="VoxCeleb2 dev (dev/aac/idNNNNN/<video>/NNNNN.m4a).")
@click.option("--lists-dir", type=_DIR, default=None, help="Folder of the verification lists (veri_test2.txt, ...).")
@click.option("--musan-dir", type=_DIR, default=None, help="MUSAN (music/ speech/ noise/).")
@click.option("--rirs-dir", type=_DIR, default=None, help="RIRS_NOISES (simulated_rirs/, real_rirs_isotropic_noises/).")
def check(vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir) -> None:
    """The download step: the corpora need registration, so this only checks what is there.

    For each corpus given but missing it prints where to get it, and then exits 1.
    """
    from pyspeaker.data.voxceleb import SOURCES, missing_corpora

    problems = missing_corpora(vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir)
    if not any((vox1_dir, vox2_dir, lists_dir, musan_dir, rirs_dir)):
        problems = [f"{name}: {url}" for name, url in SOURCES.items()]
        problems.insert(0, "no corpus location given; the data comes from:")
    if problems:
        for p in problems:
            click.echo(p, err=True)
        sys.exit(1)
    click.echo("all corpora present")


@command.command(name="convert")
@click.option("--src", "src_dir", required=True, type=_DIR, help="VoxCeleb2 dev as downloaded (m4a files).")
@click.option("--dst", "dst_dir", required=True, type=_DIR, help="Where the wav tree goes (same idNNNNN/<video>/ layout).")
@click.option("--nj", type=click.IntRange(min=1), default=4, show_default=True, help="ffmpeg processes at a time.")
@click.option("--ffmpeg", default="ffmpeg", show_default=True, help="The ffmpeg program.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=16000, show_default=True, help="Output rate in Hz.")
def convert(src_dir, dst_dir, nj, ffmpeg, sample_rate) -> None:
    """Convert VoxCeleb2's m4a to 16-bit wav once (resumable: converted files are skipped).

    Exits 1 if any file failed (the next run retries only those).
    """
    from pyspeaker.data.voxceleb import convert_m4a_tree

    report = convert_m4a_tree(src_dir, dst_dir, nj=nj, ffmpeg=ffmpeg, sample_rate=sample_rate,
                              progress=sys.stderr.isatty())
    click.echo(f"{dst_dir}: converted {report.converted}, already there {report.skipped}, "
               f"failed {len(report.failed)}")
    for src, reason in report.failed[:10]:
        click.echo(f"failed: {src}: {reason}", err=True)
    if report.failed:
        click.echo(f"{len(report.failed)} file(s) failed; run again to retry them", err=True)
        sys.exit(1)


@command.command(name="data")
@click.option("--vox1-dir", type=_DIR, default=None, help="VoxCeleb1: voxceleb1, voxceleb1_dev, voxceleb1_test.")
@click.option("--vox2-dir", type=_DIR, default=None,
              help="VoxCeleb2 dev (m4a as downloaded, or the wav tree of 'convert'): voxceleb2_dev.")
@click.option("--lists-dir", type=_DIR, default=None,
              help="Verification lists to convert to Kaldi trials (default: --vox1-dir).")
@click.option("--out", "data_root", default="data", show_default=True, type=_DIR, help="Where the data dirs go.")
@click.option("--ffmpeg", default="ffmpeg", show_default=True, help="The ffmpeg program named in wav.scp pipes.")
@click.option("--check-counts/--no-check-counts", default=True, show_default=True,
              help="Warn when a list's line count differs from the published one.")
def data(vox1_dir, vox2_dir, lists_dir, data_root, ffmpeg, check_counts) -> None:
    """Make the VoxCeleb data dirs (sorted, ids idNNNNN-<video>-NNNNN) and trials under OUT.

    Trials: <OUT>/voxceleb1_test/trials_O[_clean] (veri_test[2].txt), <OUT>/voxceleb1/trials_E[_clean]
    (list_test_all[2].txt) and trials_H[_clean] (list_test_hard[2].txt), for the lists present.
    """
    from pyspeaker.data.voxceleb import convert_vox1_lists, prepare_voxceleb1, prepare_voxceleb2
    from pyspeaker.errors import ConfigError

    if not vox1_dir and not vox2_dir:
        raise ConfigError("give --vox1-dir and/or --vox2-dir")
    _refuse_overlap(data_root, ("voxceleb1", "voxceleb1_dev", "voxceleb1_test", "voxceleb2_dev"),
                    {"--vox1-dir": vox1_dir, "--vox2-dir": vox2_dir, "--lists-dir": lists_dir})
    if vox1_dir:
        _print_sets(prepare_voxceleb1(vox1_dir, data_root))
        _print_trials(convert_vox1_lists(lists_dir or vox1_dir, data_root, check_counts=check_counts))
    if vox2_dir:
        _print_sets([prepare_voxceleb2(vox2_dir, data_root, ffmpeg=ffmpeg)])


@command.command(name="trials")
@click.argument("list_file", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=_DIR, default=None, help="Warn about trials whose utterances are not in this data dir.")
@click.option("--expected", type=click.IntRange(min=0), default=None,
              help="Expected line count (default: the published count for a known list name).")
def trials(list_file, out, data_dir, expected) -> None:
    """Convert one VoxCeleb list (<1|0> <path1> <path2>) to Kaldi trials (<enroll> <test> target|nontarget)."""
    from pathlib import Path

    from pyspeaker.data.kaldi_dir import read_table
    from pyspeaker.data.voxceleb import LIST_ALIASES, VOX1_LISTS, convert_trials

    from pyspeaker.fileio import refuse_overlap

    refuse_overlap({"OUT": out}, {"LIST_FILE": list_file, "--data-dir": data_dir})
    name = LIST_ALIASES.get(Path(list_file).name, Path(list_file).name)
    if expected is None and name in VOX1_LISTS:
        expected = VOX1_LISTS[name].expected
    known = None
    if data_dir:
        known = {key for _, key, _ in read_table(Path(data_dir) / "utt2spk")}
    _print_trials([convert_trials(list_file, out, expected=expected, known_utts=known, data_dir=data_dir)])


@command.command(name="augment")
@click.option("--musan-dir", type=_DIR, default=None, help="MUSAN: musan, musan_music, musan_speech, musan_noise.")
@click.option("--rirs-dir", type=_DIR, default=None, help="RIRS_NOISES: rirs_simulated, rirs_real.")
@click.option("--rir-rooms", default="smallroom mediumroom", show_default=True,
              help="Simulated room sets in rirs_simulated (space-separated; '' for none).")
@click.option("--out", "data_root", default="data", show_default=True, type=_DIR, help="Where the data dirs go.")
def augment(musan_dir, rirs_dir, rir_rooms, data_root) -> None:
    """Data dirs of augmentation sources (wav.scp, utt2spk mapping each id to itself, utt2dur)."""
    from pyspeaker.data.voxceleb import prepare_musan, prepare_rirs
    from pyspeaker.errors import ConfigError

    if not musan_dir and not rirs_dir:
        raise ConfigError("give --musan-dir and/or --rirs-dir")
    _refuse_overlap(data_root, ("musan", "musan_music", "musan_speech", "musan_noise", "rirs_simulated", "rirs_real"),
                    {"--musan-dir": musan_dir, "--rirs-dir": rirs_dir})
    if musan_dir:
        _print_sets(prepare_musan(musan_dir, data_root))
    if rirs_dir:
        _print_sets(prepare_rirs(rirs_dir, data_root, rooms=rir_rooms.split()))
