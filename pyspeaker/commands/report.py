"""``pyspeaker report``: one table of results (and ``RESULTS.md``), a row per (system, trials, back-end, norm).

Each ``--system NAME=METRICS_JSON`` is one metrics.json from ``pyspeaker compute-metrics``; the
table shows its trial list (with line count), back-end, score normalisation, EER, minDCF at every
p_target found, and, for calibrated scores, actual DCF and Cllr. With ``--out`` the same table is
written as Markdown, followed by the DET and histogram figures found next to each metrics.json.

With ``--valid-metrics`` (one per ``--system``, in the same order: each row's metrics on the
validation trials) the table adds the validation EER and minDCF and marks the selected row: the
lowest validation minDCF at the smallest p_target, then the lowest validation EER. The test trials
play no part in the choice.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from pyspeaker.errors import DataError


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def select_on_validation(valid: list[dict]) -> tuple[int, float]:
    """``(index, p_target)`` of the best validation metrics: lowest minDCF at the smallest p_target
    they all have, ties broken by EER (then by order)."""
    common = set.intersection(*(set(m.get("min_dcf", {})) for m in valid))
    if not common:
        raise DataError("the validation metrics share no minDCF p_target to select on")
    p = min(common, key=float)
    return min(range(len(valid)), key=lambda i: (valid[i]["min_dcf"][p], valid[i]["eer"], i)), p


def _selected_rows(rows: list[tuple[str, dict]], valid: list[dict]) -> tuple[list[int], str]:
    """The selected row of each test trial list (rows of different lists are different tasks)."""
    groups: dict = {}
    for i, (_, m) in enumerate(rows):
        groups.setdefault(m.get("trials"), []).append(i)
    chosen, p_sel = [], None
    for idx in groups.values():
        j, p_sel = select_on_validation([valid[i] for i in idx])
        chosen.append(idx[j])
    return chosen, p_sel


def build_table(rows: list[tuple[str, dict]], valid: list[dict] | None = None
                ) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, lines, notes)`` for ``[(system name, metrics dict)]`` (and each row's validation
    metrics: the selected row is marked)."""
    p_targets = list(dict.fromkeys(p for _, m in rows for p in m.get("min_dcf", {})))
    calibrated = any(m.get("calibrated") for _, m in rows)
    costs = sorted({(m.get("c_miss", 1.0), m.get("c_fa", 1.0)) for _, m in rows})
    header = ["system", "trials", "back-end", "norm", "EER (%)"] + [f"minDCF (p_target={p})" for p in p_targets]
    if calibrated:
        header += [f"actDCF (p_target={p})" for p in p_targets] + ["Cllr", "min Cllr"]
    header += ["targets", "non-targets"]
    chosen, p_sel = [], None
    if valid:
        chosen, p_sel = _selected_rows(rows, valid)
        header += ["valid EER (%)", f"valid minDCF (p_target={p_sel})", "selected"]
    lines = []
    for i, (name, m) in enumerate(rows):
        trials = m.get("trials", "-")
        if m.get("trials_lines") is not None:
            trials = f"{trials} ({m['trials_lines']} lines)"
        eer = _fmt(m.get("eer"), ".2f") + (" (kaldi)" if m.get("compat") == "kaldi" else "")
        line = [name, trials, m.get("backend") or "-", m.get("score_norm") or "-", eer]
        line += [_fmt(m.get("min_dcf", {}).get(p), ".4f") for p in p_targets]
        if calibrated:
            line += [_fmt(m.get("act_dcf", {}).get(p), ".4f") for p in p_targets]
            line += [_fmt(m.get("cllr"), ".4f"), _fmt(m.get("min_cllr"), ".4f")]
        line += [str(m.get("num_target", "-")), str(m.get("num_nontarget", "-"))]
        if valid:
            line += [_fmt(valid[i].get("eer"), ".2f"), _fmt(valid[i]["min_dcf"].get(p_sel), ".4f"),
                     "*" if i in chosen else ""]
        lines.append(line)
    notes = [f"DCF costs: c_miss={c:g}, c_fa={f:g}; minDCF normalised by min(c_miss*p_target, c_fa*(1-p_target))."
             for c, f in costs]
    notes.append("EER: tie-aware, interpolated" + ("; '(kaldi)': Kaldi's compute-eer and minDCF as "
                                                  "sid/compute_min_dcf.py" if any(m.get("compat") == "kaldi"
                                                                                  for _, m in rows) else "") + ".")
    for i in chosen:
        name, m = rows[i]
        of = f" for {m['trials']}" if len(chosen) > 1 else ""
        notes.append(f"selected (*){of} on the validation trials, not the test trials: {name}, "
                     f"{m.get('backend') or '-'}, norm {m.get('score_norm') or '-'} (lowest validation "
                     f"minDCF(p_target={p_sel}), then EER): test EER {_fmt(m.get('eer'), '.2f')} %, "
                     f"minDCF(p_target={p_sel}) {_fmt(m.get('min_dcf', {}).get(p_sel), '.4f')}.")
    return header, lines, notes


def _read_metrics(path: str) -> dict:
    import json

    if not Path(path).is_file():
        raise DataError("metrics file not found (run the metrics stage first)", path=path)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", path=path, line=e.lineno) from None


@click.command(name="report")
@click.option("--system", "systems", multiple=True, required=True, metavar="NAME=METRICS_JSON",
              help="A system's name and its metrics.json from compute-metrics (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the table as Markdown here (e.g. exp/<name>/RESULTS.md), with the figures.")
@click.option("--valid-metrics", "valid_paths", multiple=True, metavar="METRICS_JSON",
              help="The same system's metrics.json on the validation trials, once per --system in its order: "
                   "adds validation columns and marks the system selected on them.")
@click.option("--title", default="Results", show_default=True, help="Heading of the Markdown file.")
def command(systems, valid_paths, out, title):
    """Print one row per result (system, trials, back-end, norm) with p_target in the header."""
    from pyspeaker.fileio import refuse_overlap, write_text_atomic

    refuse_overlap({"--out": out}, {**{f"--system {s}": s.partition("=")[2] or None for s in systems},
                                     **{f"--valid-metrics {v}": v for v in valid_paths}})
    if valid_paths and len(valid_paths) != len(systems):
        raise DataError(f"--valid-metrics given {len(valid_paths)} times for {len(systems)} --system rows "
                        f"(one per --system, in its order)")
    rows = []
    for item in systems:
        if "=" not in item:
            raise DataError(f"--system expects NAME=METRICS_JSON, got {item!r}")
        name, path = item.split("=", 1)
        rows.append((name, _read_metrics(path), Path(path)))
    valid = [_read_metrics(v) for v in valid_paths] or None
    header, lines, notes = build_table([(n, m) for n, m, _ in rows], valid)
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    for r in [header] + lines:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for note in notes:
        if note.startswith("selected"):
            click.echo(note)
    if out:
        md = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in lines]
        md += [""] + [f"- {n}" for n in notes]
        figures = []
        base = Path(out).resolve().parent
        for name, _, path in rows:
            for png, what in (("det.png", "DET curve"), ("hist.png", "score histogram")):
                fig = path.resolve().parent / png
                if fig.is_file():
                    figures.append(f"![{name}: {what}]({os.path.relpath(fig, base)})")
        if figures:
            md += ["", "## Figures", ""] + [f + "\n" for f in figures]
        write_text_atomic(out, "\n".join(md).rstrip("\n") + "\n")
