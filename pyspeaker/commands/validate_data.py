"""``pyspeaker validate-data``: check a Kaldi data dir as Kaldi's utils/validate_data_dir.sh does."""
from __future__ import annotations

import sys

import click


@click.command(name="validate-data")
@click.argument("data_dir", type=click.Path())
@click.option("--check-audio/--no-check-audio", default=True, show_default=True,
              help="Read every wav.scp entry (decode files, run pipes) and check segment ranges.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=None, metavar="HZ",
              help="Also require every recording to have this sample rate.")
def command(data_dir: str, check_audio: bool, sample_rate: int | None) -> None:
    """Check DATA_DIR (wav.scp, utt2spk, spk2utt, segments, utt2dur) and its audio.

    Prints one `<file>:<line>: <problem>` line per problem on stderr and exits 1, or prints
    `<DIR>: OK (<n> utterances, <m> speakers)` and exits 0.
    """
    from pyspeaker.data.kaldi_dir import DataDir, validate_data_dir

    problems = validate_data_dir(data_dir, check_audio=check_audio, sample_rate=sample_rate,
                                 progress=sys.stderr.isatty())
    if problems:
        for problem in problems:
            click.echo(problem.format(), err=True)
        sys.exit(1)
    datadir = DataDir.load(data_dir, validate=False)
    click.echo(f"{data_dir}: OK ({len(datadir.utt2spk)} utterances, {len(datadir.spk2utt)} speakers)")
