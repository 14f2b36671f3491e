"""The ``pyspeaker`` command: one thin click command per stage.

Commands live one per module in ``pyspeaker/commands/`` (module ``make_features`` gives command
``make-features``) and each module exposes ``command``, a ``click.Command``. Modules import torch and
other heavy libraries inside their function bodies, so ``pyspeaker --help`` stays fast.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import click

from pyspeaker import __version__
from pyspeaker.errors import PyspeakerError

from pyspeaker import commands as _commands_pkg


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(_commands_pkg.__path__)
                      if not m.name.startswith("_"))

    def get_command(self, ctx, name):
        if name not in self.list_commands(ctx):
            return None
        module = importlib.import_module(f"pyspeaker.commands.{name.replace('-', '_')}")
        return module.command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pyspeaker")
def cli():
    """pyspeaker: Kaldi-style speaker verification (features, training, embeddings, scoring, metrics).

    Each command is one recipe stage; run `pyspeaker COMMAND --help` for its options.
    """


def _one_line(text: str) -> str:
    return " / ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def main(argv=None) -> None:
    """The ``pyspeaker`` program: run the CLI and exit. Every failure is one ``error: ...`` line on
    stderr, never a traceback: bad input and refused requests exit 1, usage errors (an unknown
    option, a value out of range) exit 2."""
    _leave(run(argv))


def run(argv=None, command: click.Command | None = None, prog_name: str = "pyspeaker") -> int:
    """Run a command line in this process, as :func:`main` does, and return its exit code."""
    try:
        _dispatch(command or cli, argv, prog_name)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def run_script(command: click.Command, argv=None) -> None:
    """Run a script's click command (the corpus preparation in ``local/``) as :func:`main` runs the
    ``pyspeaker`` commands: same ``error: ...`` lines and exit codes, ``$0`` as the program name."""
    _leave(run(argv, command, sys.argv[0] if sys.argv and sys.argv[0] else command.name))


def _leave(code: int) -> None:
    """Exit with ``code``. Once pyarrow (trial and score files) is loaded, leave without the
    interpreter's teardown: Arrow's thread pools can abort it at random ("terminate called without
    an active exception", exit 134; apache/arrow#34314) after the work is done and written."""
    if "pyarrow" in sys.modules:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _dispatch(command: click.Command, argv, prog_name) -> None:
    try:
        command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except PyspeakerError as e:
        click.echo(f"error: {_one_line(e.format())}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as e:
        path = e.ctx.command_path if e.ctx is not None else (prog_name or command.name)
        click.echo(f"error: {_one_line(e.format_message())} (see '{path} --help')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {_one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:  # a system error no reader turned into a DataError: still one line naming the file
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{_one_line(e.strerror or e)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
