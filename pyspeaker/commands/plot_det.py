"""``pyspeaker plot-det``: DET curves of several systems on one trial list, on one plot."""
from __future__ import annotations

from pathlib import Path

import click


@click.command(name="plot-det")
@click.option("--system", "systems", multiple=True, required=True, metavar="NAME=SCORES",
              help="A system's name and its scores file (repeatable; every one is scored on --trials).")
@click.option("--trials", "trials_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labelled trial list shared by the systems (Kaldi or VoxCeleb format).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output PNG.")
@click.option("--p-target", "p_targets", multiple=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Mark the minDCF point at this p_target; repeat for several (default: 0.01 and 0.05).")
@click.option("--c-miss", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Cost of a miss in the DCF.")
@click.option("--c-fa", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Cost of a false alarm in the DCF.")
@click.option("--title", default=None, help="Plot title (default: 'DET: <trials file name>').")
def command(systems: tuple[str, ...], trials_path: Path, out: Path, p_targets: tuple[float, ...], c_miss: float,
            c_fa: float, title: str | None) -> None:
    """One DET plot (normal-deviate axes) with a curve, EER and minDCF points per system."""
    from pyspeaker.commands.compute_metrics import load_matched
    from pyspeaker.errors import ConfigError, DataError
    from pyspeaker.fileio import refuse_overlap
    from pyspeaker.log import get_logger, setup_logging
    from pyspeaker.plots import plot_det

    setup_logging()
    refuse_overlap({"--out": out}, {"--trials": trials_path,
                                    **{f"--system {s}": s.partition("=")[2] or None for s in systems}})
    curves = {}
    for item in systems:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--system expects NAME=SCORES, got {item!r}")
        if name in curves:
            raise ConfigError(f"system name '{name}' given twice")
        if not Path(path).is_file():
            raise DataError("scores file not found", path=path)
        matched, labels, _, _ = load_matched(Path(path), trials_path)
        curves[name] = (matched[labels], matched[~labels])
    plot_det(curves, out, p_targets=tuple(dict.fromkeys(p_targets or (0.01, 0.05))), c_miss=c_miss, c_fa=c_fa,
             title=title or f"DET: {trials_path.name} (o = EER)")
    get_logger("plot-det").info("DET of %d systems on %s -> %s", len(curves), trials_path, out)
