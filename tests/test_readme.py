"""The README is true: every command it shows names a real program, subcommand and options.

Each `pyspeaker`, `python local/...`, `./run.sh` and `steps/*.sh` line of the README's bash blocks
is checked against the program itself: the command exists, and every `--option` on the line is one
the program accepts (click's parameters for the Python CLIs, the `--help` text for the shell
scripts). The commands themselves run for real in the other tests (the recipe, the FSDD run, the
bad-input table, the Slurm and training tests); this test catches a README that drifted.
"""
from __future__ import annotations

import re
import shlex
import subprocess

import click
import pytest

from conftest import REPO, load_local

README = (REPO / "README.md").read_text()


def _command_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        current = ""
        for raw in block.splitlines():
            text = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            current = f"{current} {text.strip()}".strip()
            if current.endswith("\\"):
                current = current[:-1].rstrip()
                continue
            if current:
                lines.extend(part.strip() for part in current.split("&&"))
            current = ""
    return lines


LINES = _command_lines()


def _options(words: list[str]) -> list[str]:
    """The option names among the words (a quoted value such as "--ngpu 4" is a value, not one)."""
    return [w.split("=", 1)[0] for w in words if w.startswith("--") and " " not in w]


def _click_options(command: click.Command, words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words select, and the words left for it."""
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.get_command(None, words[0])
        assert sub is not None, f"{command.name} has no subcommand {words[0]!r}"
        command, words = sub, words[1:]
    return command, words


def _check_click(command: click.Command, words: list[str], line: str) -> None:
    command, words = _click_options(command, words)
    accepted = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}
    unknown = [o for o in _options(words) if o not in accepted]
    assert not unknown, f"README: {line!r}: {command.name} has no option {unknown}"


def _local_command(script: str) -> click.Command:
    command = load_local(script).main  # each local/ script's click command is its main
    assert isinstance(command, click.Command), script
    return command


def _help_text(argv: list[str]) -> str:
    proc = subprocess.run(argv + ["--help"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout + proc.stderr


def test_readme_shows_each_kind_of_command():
    starts = {line.split()[0] for line in LINES}
    assert {"pyspeaker", "./run.sh", "python", "./test.sh"} <= starts
    assert sum(line.startswith("pyspeaker ") for line in LINES) >= 20


@pytest.mark.parametrize("line", [line for line in LINES if line.startswith("pyspeaker ")])
def test_pyspeaker_lines(line):
    from pyspeaker.cli import cli

    _check_click(cli, shlex.split(line)[1:], line)


@pytest.mark.parametrize("line", [line for line in LINES if line.startswith("python local/")])
def test_local_script_lines(line):
    words = shlex.split(line)
    _check_click(_local_command(words[1]), words[2:], line)


def _run_sh_help(recipe: str) -> str:
    return _help_text(["./run.sh", "--recipe", recipe])


@pytest.mark.parametrize("line", [line for line in LINES if line.startswith("./run.sh")])
def test_run_sh_lines(line):
    words = shlex.split(line)
    recipe = words[words.index("--recipe") + 1] if "--recipe" in words else "mini"
    text = _run_sh_help(recipe)
    for option in _options(words[1:]):
        assert option in ("--help", "--recipe") or re.search(rf"(^|\s|\[){re.escape(option)}(\s|$|\])", text, re.M), \
            f"README: {line!r}: ./run.sh --recipe {recipe} --help does not list {option}"


@pytest.mark.parametrize("line", [line for line in LINES if line.startswith(("steps/", "local/"))])
def test_shell_step_lines(line):
    words = shlex.split(line)
    assert (REPO / words[0]).is_file(), f"README: {line!r}: no {words[0]}"
    text = _help_text([str(REPO / words[0])])
    for option in _options(words[1:]):
        assert option in text, f"README: {line!r}: {words[0]} --help does not list {option}"


def test_readme_names_files_that_exist():
    for path in re.findall(r"`((?:conf|recipes|local|steps|utils|bench|docs)/[\w./-]+\.(?:sh|py|yaml|conf|md))`",
                           README):
        assert (REPO / path).is_file(), f"README names {path}, which is not in the repository"


def test_readme_set_options_name_real_settings():
    """Every `--set section.key=value` the README shows is a setting of pyspeaker train (the model and
    loss sections take the chosen family's own options, checked when it is built)."""
    from pyspeaker.training.config import load_config

    sets = [w[i + 1] for line in LINES if line.startswith("pyspeaker train")
            for w in [shlex.split(line)] for i in range(len(w) - 1) if w[i] == "--set"]
    assert len(sets) >= 10 and "data.audio_bank=true" in sets
    defaults = load_config(None, [])
    for item in sets:
        key = item.split("=", 1)[0]
        section, name = key.split(".", 1)
        if section not in ("model", "loss"):
            assert name in defaults.get(section, {}), f"README: --set {item}: no setting {key}"
