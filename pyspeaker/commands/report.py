"""`pyspeaker report`: one table of EER / minDCF for several systems (and RESULTS.md)."""
from __future__ import annotations

import click


@click.command(name="report")
@click.option("--system", "systems", multiple=True, required=True, metavar="NAME=METRICS_JSON",
              help="A system's name and its metrics.json from compute-metrics (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the table as Markdown here.")
def command(systems, out):
    """Print EER and minDCF of each system side by side (p_target shown in the header)."""
    import json
    from pathlib import Path

    from pyspeaker.errors import DataError
    from pyspeaker.fileio import write_text_atomic

    rows = []
    for item in systems:
        if "=" not in item:
            raise DataError(f"--system expects NAME=METRICS_JSON, got {item!r}")
        name, path = item.split("=", 1)
        if not Path(path).is_file():
            raise DataError("metrics file not found (run the metrics stage first)", path=path)
        rows.append((name, json.loads(Path(path).read_text())))
    p_targets = list(rows[0][1]["min_dcf"])
    header = ["system", "EER (%)"] + [f"minDCF (p_target={p})" for p in p_targets] + ["targets", "non-targets", "trials"]
    lines = [[name, f"{m['eer']:.2f}"] + [f"{m['min_dcf'][p]:.4f}" for p in p_targets]
             + [str(m["num_target"]), str(m["num_nontarget"]), m["trials"]] for name, m in rows]
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    for r in [header] + lines:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if out:
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in lines]
        write_text_atomic(out, "\n".join(md) + "\n")
