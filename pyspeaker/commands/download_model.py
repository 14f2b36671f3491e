"""`pyspeaker download-model`: checked, resumable download of a published model."""
from __future__ import annotations

import click


@click.command(name="download-model")
@click.argument("model", required=False, metavar="NAME|URL")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Directory to download into (the file keeps its name: OUT/NAME).")
@click.option("--sha256", default=None, metavar="HEX",
              help="Expected sha256 of the file (for a URL, or to override the built-in table).")
@click.option("--list", "list_models", is_flag=True, help="Print the built-in table of models and exit.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for the server (connecting, and between blocks).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when on a terminal).")
def command(model, out_dir, sha256, list_models, timeout, progress):
    """Download NAME (a model of the built-in table, see --list) or an http(s) URL into --out.

    The transfer goes to OUT/NAME.part and resumes from there when run again after an interruption
    (HTTP Range request; a server that ignores it makes the download start over). The file appears as
    OUT/NAME only once its sha256 matches the expected one (the table's or --sha256); on a mismatch
    the partial file is deleted and the command fails naming both checksums. With no known checksum
    the file is kept unverified, with a warning, and its computed sha256 is printed and written to
    OUT/NAME.sha256. Prints `<sha256>  <path>` of the file.
    """
    from pyspeaker.log import get_logger, setup_logging

    if list_models:
        from pyspeaker.download import table_lines

        for line in table_lines():
            click.echo(line)
        return
    if model is None:
        raise click.UsageError("give a model NAME or URL (or --list)")
    if out_dir is None:
        raise click.UsageError("--out is needed")

    from pyspeaker.download import download, resolve

    setup_logging()
    log = get_logger("pyspeaker.commands.download_model")
    name, url, expected = resolve(model, sha256)
    path, actual, verified = download(url, out_dir, name, expected, timeout=timeout, progress=progress)
    if verified:
        log.info("%s: sha256 %s verified", path, actual)
    else:
        log.warning("%s could not be verified (no known sha256); computed sha256 %s, recorded in %s.sha256 "
                    "(pass it as --sha256 to check later downloads)", path, actual, path)
    click.echo(f"{actual}  {path}")
