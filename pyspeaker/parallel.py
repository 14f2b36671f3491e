"""Kaldi-style parallel jobs: N jobs, one log each, started by the launcher that ``--cmd`` names.

The accepted ``--cmd`` values (every command with ``--nj``, ``steps/train.sh``, ``conf/cmd.sh``):

``local`` (the default)
    local processes.
``slurm [sbatch options]``
    one Slurm batch job per job, as Kaldi's ``slurm.pl``: ``sbatch --wait --parsable
    --output=<job log> --open-mode=append [options] --wrap <job command>``, so the job's output is
    its own log (``--cmd "slurm -p cpu --mem=4G --time=2:00:00"``).
any other command line
    a launcher prefix put before each job's command, which then runs under it here
    (``--cmd "srun --ntasks=1"``, ``--cmd "nice -n 10"``).

Jobs end with their parent: local processes (launchers included) run in their own process group,
killed (SIGTERM, then SIGKILL) when the parent stops on an error, Ctrl-C, SIGTERM or SIGHUP, and
sent SIGKILL by the kernel if the parent dies without cleaning up (SIGKILL, the OOM killer);
submitted Slurm jobs are cancelled with ``scancel`` (except after a SIGKILL of the parent).

``python -m pyspeaker.parallel --cmd C --log L [--slurm-option OPT ...] -- COMMAND...`` runs one
job the same way; ``steps/train.sh`` submits training with it.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pyspeaker.errors import PyspeakerError
from pyspeaker.log import get_logger

log = get_logger(__name__)

ACCEPTED = "accepted: local, \"slurm [sbatch options]\", or a launcher prefix such as \"srun --ntasks=1\""
# sbatch options pyspeaker sets itself for every job
_RESERVED_SBATCH = ("-o", "--output", "-e", "--error", "--open-mode", "--wrap", "-W", "--wait", "--parsable")
_GRACE_S = 5.0  # SIGTERM -> SIGKILL


@dataclass(frozen=True)
class Launcher:
    """A parsed ``--cmd``: kind ``local``, ``slurm`` (words = sbatch options) or ``prefix`` (words = argv)."""

    kind: str
    words: tuple[str, ...] = ()


def parse_cmd(cmd: str) -> Launcher:
    """Check a ``--cmd`` value; a PyspeakerError names what is wrong in one line."""
    try:
        words = shlex.split(cmd or "local")
    except ValueError as e:
        raise PyspeakerError(f"--cmd {cmd!r}: {e} ({ACCEPTED})") from None
    if words in ([], ["local"]):
        return Launcher("local")
    if words[0] == "slurm":
        if shutil.which("sbatch") is None:
            raise PyspeakerError("--cmd slurm: sbatch not found on PATH (is this a Slurm login node?)")
        for w in words[1:]:
            name = w.split("=", 1)[0]
            if name in _RESERVED_SBATCH or (len(name) > 2 and name[:2] in ("-o", "-e")):
                raise PyspeakerError(f"--cmd {cmd!r}: {name} is set by pyspeaker for each job (its log, --wrap, "
                                     "--wait); leave it out")
        return Launcher("slurm", tuple(words[1:]))
    if words[0] in ("sbatch", "qsub"):
        raise PyspeakerError(f"--cmd {cmd!r}: {words[0]} needs a job script; for Slurm write --cmd "
                             f"{shlex.join(['slurm', *words[1:]])!r} ({ACCEPTED})")
    if shutil.which(words[0]) is None:
        raise PyspeakerError(f"--cmd {cmd!r}: {words[0]} not found on PATH ({ACCEPTED})")
    return Launcher("prefix", tuple(words))


def _pdeathsig():
    """A function for the child before exec: the kernel sends it SIGKILL when the parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # resolved here: the child must not load libraries between fork and exec
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


_DIE_WITH_PARENT = _pdeathsig()


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class _Job:
    """One running job: a local process, or the ``sbatch --wait`` process of a Slurm job."""

    def __init__(self, number: int, argv: list[str], log_path: Path, launcher: Launcher,
                 slurm_options: tuple[str, ...]):
        self.number, self.log_path = number, Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        line = shlex.join(argv)
        self.slurm = launcher.kind == "slurm"
        if self.slurm:
            run = ["sbatch", "--wait", "--parsable", f"--output={self.log_path.resolve()}", "--open-mode=append",
                   f"--job-name={self.log_path.stem}", *slurm_options, *launcher.words, "--wrap", line]
            header = f"# {line}\n# submitted with: {shlex.join(run[:-2])} --wrap ...\n"
        else:
            run = [*launcher.words, *argv]
            header = f"# {shlex.join(run)}\n"
        self.fh = open(self.log_path, "w")
        self.fh.write(f"{header}# started {_stamp()}\n")
        self.fh.flush()
        if self.slurm:  # Slurm appends the job's output; sbatch's own lines are read from a pipe
            self.fh.close()
        self._out = b""
        self.done = False
        # own process group: the job's whole process tree can be signalled at once, and a Ctrl-C
        # at the terminal reaches only the parent, which then stops the jobs itself
        self.proc = subprocess.Popen(run, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if self.slurm else self.fh, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_DIE_WITH_PARENT)
        if self.slurm:
            os.set_blocking(self.proc.stdout.fileno(), False)

    def _read_sbatch(self) -> str:
        if self.slurm and not self.proc.stdout.closed:
            while True:
                try:
                    chunk = self.proc.stdout.read()
                except BlockingIOError:
                    chunk = None
                if not chunk:
                    break
                self._out += chunk
        return self._out.decode(errors="replace")

    def slurm_id(self) -> str | None:
        """The Slurm job id, once sbatch has printed it (``--parsable``: ``id`` or ``id;cluster``)."""
        first = self._read_sbatch().partition("\n")[0].split(";")[0].strip()
        return first if first.isdigit() else None

    def finish(self, rc: int) -> None:
        """Close the log with sbatch's own messages (submission errors) and the exit code."""
        if self.done:
            return
        self.done = True
        if self.slurm:
            lines = self._read_sbatch().splitlines()
            self.proc.stdout.close()
            job_id = self.slurm_id()
            self.fh = open(self.log_path, "a")
            if job_id is not None:
                self.fh.write(f"# slurm job {job_id}\n")
            self.fh.write("".join(f"{m}\n" for m in lines[job_id is not None:] if m.strip()))  # "sbatch: error: ..."
        self.fh.write(f"# ended {_stamp()} with exit code {rc}\n")
        self.fh.close()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Terminated(BaseException):
    """SIGTERM/SIGHUP arrived: unwinds like KeyboardInterrupt so the jobs get stopped."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(jobs: list[_Job], why: str) -> None:
    """Cancel the Slurm jobs, then end every local process group: SIGTERM, SIGKILL after a grace time."""
    deadline = time.monotonic() + 2  # a job being submitted right now: wait for its id
    while any(j.slurm and j.slurm_id() is None and j.proc.poll() is None for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    ids = [i for i in (j.slurm_id() for j in jobs if j.slurm) if i]
    log.warning("%s: stopping %d running job(s)%s", why, len(jobs), f", scancel {' '.join(ids)}" if ids else "")
    if ids:
        try:
            subprocess.run(["scancel", *ids], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("scancel %s failed (%s): cancel them by hand", " ".join(ids), e)
    for j in jobs:
        j.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    for j in jobs:
        try:
            j.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for j in jobs:
        j.signal_group(signal.SIGKILL)  # also whatever the job left behind in its group
        j.finish(j.proc.wait())


def _log_tail(path: Path, n: int = 5) -> list[str]:
    """The last lines a job wrote (not the "# " lines of the log's frame), with the last ``error:`` line
    first when it is older: launchers such as srun add their own lines after the job's message."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip() and
             not line.startswith("# ")]
    tail = lines[-n:]
    errors = [line for line in lines if line.startswith("error: ")]
    if errors and errors[-1] not in tail:
        tail = [errors[-1], "...", *tail[-(n - 2):]]
    return tail


def _raise_terminated(signum, frame):
    raise _Terminated(signum)


def run_jobs(cmd: str, job_commands: list[list[str]], log_paths: list[Path], max_parallel: int | None = None,
             slurm_options: tuple[str, ...] | list[str] = ()) -> None:
    """Run every job (argv list) with its own log through the ``--cmd`` launcher.

    Raises a PyspeakerError naming the failed jobs' logs. ``slurm_options`` go to sbatch before the
    user's own (which therefore win), e.g. the resources a step knows it needs.
    """
    launcher = parse_cmd(cmd)
    max_parallel = max_parallel or len(job_commands)
    pending = list(zip(range(1, len(job_commands) + 1), job_commands, log_paths))
    running: list[_Job] = []
    failed: list[tuple[int, int, Path]] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:  # an ignored SIGHUP (nohup) stays ignored
                handlers[sig] = signal.signal(sig, _raise_terminated)
    try:
        while pending or running:
            while pending and len(running) < max_parallel:
                number, argv, log_path = pending.pop(0)
                running.append(_Job(number, argv, log_path, launcher, tuple(slurm_options)))
            time.sleep(0.05)
            for job in list(running):
                job.slurm_id()  # keep the pipe drained and the id known, for scancel
                rc = job.proc.poll()
                if rc is None:
                    continue
                job.finish(rc)
                running.remove(job)
                if rc != 0:
                    failed.append((job.number, rc, job.log_path))
    except BaseException as e:
        for sig in handlers:  # a second signal must not interrupt the clean-up
            signal.signal(sig, signal.SIG_IGN)
        if running:
            why = {KeyboardInterrupt: "interrupted", _Terminated: "terminated"}.get(type(e), f"error ({e!r})")
            _stop(running, why)
        if isinstance(e, _Terminated):  # exit as the shell reports a death by that signal
            raise SystemExit(128 + e.signum) from None
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if failed:
        first = failed[0][2]
        tail = "\n".join(_log_tail(first))
        raise PyspeakerError(f"{len(failed)} of {len(job_commands)} jobs failed (first: job {failed[0][0]}, "
                             f"exit {failed[0][1]}, log {first}):\n{tail}")


def main(argv: list[str] | None = None) -> None:
    """``python -m pyspeaker.parallel --cmd C --log L [--slurm-option OPT ...] -- COMMAND...``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pyspeaker.parallel",
                                     description="Run one command as a job of the --cmd launcher, output in --log.")
    parser.add_argument("--cmd", default="local", help=f"the launcher ({ACCEPTED})")
    parser.add_argument("--log", required=True, type=Path, help="the job's log")
    parser.add_argument("--slurm-option", action="append", default=[],
                        help="an sbatch option given before those of --cmd (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    try:
        run_jobs(args.cmd, [command], [args.log], slurm_options=args.slurm_option)
    except PyspeakerError as e:
        print(f"error: {e.format()}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
