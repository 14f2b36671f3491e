"""Kaldi-style parallel jobs: N jobs, one log each, launched by a configurable command.

``--cmd local`` runs the jobs as local processes. Any other value is a launcher prefix put in
front of each job's command line (``--cmd "srun --ntasks=1 --cpus-per-task=2"``, or
``--cmd "sbatch --wait -o /dev/null"``), so a cluster scheduler replaces the local runner without
code changes, as with Kaldi's ``run.pl`` / ``slurm.pl``.
"""
from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from pyspeaker.errors import PyspeakerError
from pyspeaker.log import get_logger

log = get_logger(__name__)


def run_jobs(cmd: str, job_commands: list[list[str]], log_paths: list[Path], max_parallel: int | None = None) -> None:
    """Run every job (argv list) with its own log; raise naming the failed jobs' logs."""
    prefix = [] if cmd in ("", "local") else shlex.split(cmd)
    max_parallel = max_parallel or len(job_commands)
    pending = list(zip(range(1, len(job_commands) + 1), job_commands, log_paths))
    running: list[tuple[int, subprocess.Popen, Path, object]] = []
    failed: list[tuple[int, int, Path]] = []
    while pending or running:
        while pending and len(running) < max_parallel:
            job, argv, log_path = pending.pop(0)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(log_path, "w")
            fh.write(f"# {shlex.join(prefix + argv)}\n# started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            fh.flush()
            running.append((job, subprocess.Popen(prefix + argv, stdout=fh, stderr=subprocess.STDOUT), log_path, fh))
        time.sleep(0.05)
        for item in list(running):
            job, proc, log_path, fh = item
            rc = proc.poll()
            if rc is None:
                continue
            fh.write(f"# ended {time.strftime('%Y-%m-%d %H:%M:%S')} with exit code {rc}\n")
            fh.close()
            running.remove(item)
            if rc != 0:
                failed.append((job, rc, log_path))
    if failed:
        first = failed[0][2]
        tail = "".join(first.read_text().splitlines(keepends=True)[-5:]).strip()
        raise PyspeakerError(f"{len(failed)} of {len(job_commands)} jobs failed (first: job {failed[0][0]}, "
                             f"exit {failed[0][1]}, log {first}):\n{tail}")
