"""`pyspeaker plot-training`: loss, accuracy and validation EER per epoch of a training run, as a PNG."""
from __future__ import annotations

import click


def read_metrics(path) -> dict[str, list[float]]:
    """metrics.tsv as {column: values}; empty / non-numeric cells become NaN."""
    from pathlib import Path

    from pyspeaker.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError("no metrics.tsv (has the run finished an epoch?)", path=path)
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("epoch"):
        raise DataError("not a metrics.tsv (expected a header starting with 'epoch')", path=path, line=1)
    header = lines[0].split("\t")
    cols: dict[str, list[float]] = {h: [] for h in header}
    for n, line in enumerate(lines[1:], 2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(f"expected {len(header)} columns like the header, got {len(cells)}", path=path, line=n)
        for h, c in zip(header, cells):
            try:
                cols[h].append(float(c))
            except ValueError:
                cols[h].append(float("nan"))
    return cols


@click.command(name="plot-training")
@click.argument("exp_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write (default EXP_DIR/training.png).")
def command(exp_dir, out):
    """Draw EXP_DIR/metrics.tsv: training loss, accuracy and (when validated) EER per epoch."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pyspeaker.fileio import atomic_file, refuse_overlap
    from pyspeaker.log import setup_logging

    setup_logging()
    refuse_overlap({"--out": out}, {"metrics.tsv": Path(exp_dir) / "metrics.tsv"})
    cols = read_metrics(Path(exp_dir) / "metrics.tsv")
    epochs = np.array(cols["epoch"])
    panels = [("loss", "training loss"), ("accuracy", "training accuracy (%)")]
    eer = np.array(cols.get("valid_eer", []))
    if eer.size and np.isfinite(eer).any():
        panels.append(("valid_eer", "validation EER (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    for ax, (key, title) in zip(np.atleast_1d(axes), panels):
        y = np.array(cols[key])
        ok = np.isfinite(y)
        ax.plot(epochs[ok], y[ok], marker="o", markersize=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "valid_eer" and ok.any():
            best = int(np.nanargmin(y))
            ax.annotate(f"best {y[best]:.2f} % (epoch {int(epochs[best])})", (epochs[best], y[best]),
                        textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    fig.suptitle(Path(exp_dir).name)
    fig.tight_layout()
    out = Path(out) if out else Path(exp_dir) / "training.png"
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    click.echo(str(out))
