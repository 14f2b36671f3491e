"""--nj jobs (pyspeaker/parallel.py): the --cmd forms, their errors, and jobs that end with their parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pyspeaker.errors import PyspeakerError
from pyspeaker.parallel import Launcher, parse_cmd, run_jobs
from pyspeaker.store import FeatureStore

from conftest import REPO, run_cli
from test_make_features import FBANK, make_data_dir

PARENT = """
import sys
from pathlib import Path
from pyspeaker.parallel import run_jobs
t = sys.argv[1]  # the job and a process it started in the background: the whole process group has to go
run_jobs("local", [["sh", "-c", f"sleep {t} & sleep {t}; wait"]], [Path(sys.argv[2])])
"""


def processes_with(token: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``token``."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and token in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") \
                    and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(d.name))
        except OSError:
            pass
    return found


def wait_for(predicate, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def token() -> str:
    """A unique sleep duration, so the test finds exactly its own job processes."""
    return f"{300 + uuid.uuid4().int % 10_000}.{os.getpid()}"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_jobs_die_with_their_parent(tmp_path, how):
    t = token()
    job = f"sleep {t} & sleep {t}; wait"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, t, str(tmp_path / "job.log")], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(processes_with(f"sleep {t}")) == 3), "the job did not start"
        parent.send_signal(how)
        rc = parent.wait(timeout=15)
        if how == signal.SIGKILL:
            # no clean-up possible: the kernel kills the job process (PR_SET_PDEATHSIG)
            assert rc == -signal.SIGKILL
            assert wait_for(lambda: not processes_with(job), timeout=5), "the job process survived"
        else:
            # SIGTERM: exit 128 + 15, as a death by SIGTERM reads in a shell; Ctrl-C: Python's KeyboardInterrupt
            assert rc == (143 if how == signal.SIGTERM else -signal.SIGINT)
            assert wait_for(lambda: not processes_with(f"sleep {t}"), timeout=5), "job processes survived"
            stderr = parent.stderr.read()
            assert ("terminated" if how == signal.SIGTERM else "interrupted") + ": stopping 1 running job(s)" in stderr
            assert "exit code -15" in (tmp_path / "job.log").read_text()
    finally:
        parent.kill()
        for p in processes_with(f"sleep {t}"):
            os.kill(p, signal.SIGKILL)


def test_an_error_in_the_parent_stops_the_jobs_already_running(tmp_path):
    t = token()
    (tmp_path / "not_a_dir").write_text("")
    with pytest.raises(OSError):  # job 2's log cannot be created: job 1 must not keep running
        run_jobs("local", [["sleep", t], ["true"]], [tmp_path / "a.log", tmp_path / "not_a_dir" / "b.log"])
    assert not processes_with(f"sleep {t}")


def test_cmd_forms_and_their_errors(tmp_path, monkeypatch):
    assert parse_cmd("local") == parse_cmd("") == Launcher("local")
    assert parse_cmd("nice -n 5") == Launcher("prefix", ("nice", "-n", "5"))
    errors = {
        "no-such-launcher -x": "--cmd 'no-such-launcher -x': no-such-launcher not found on PATH (accepted: local, "
                               "\"slurm [sbatch options]\", or a launcher prefix such as \"srun --ntasks=1\")",
        "sbatch --wait -p cpu": "--cmd 'sbatch --wait -p cpu': sbatch needs a job script; for Slurm write --cmd "
                                "'slurm --wait -p cpu' (accepted: local, ",
        "local 'oops": "--cmd \"local 'oops\": No closing quotation",
    }
    for cmd, message in errors.items():
        with pytest.raises(PyspeakerError) as e:
            parse_cmd(cmd)
        assert str(e.value).startswith(message)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there: no sbatch
    with pytest.raises(PyspeakerError, match=r"^--cmd slurm: sbatch not found on PATH"):
        parse_cmd("slurm -p cpu")
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    for reserved in ("-o x.log", "--output=x.log", "-ex.log", "--wrap 'echo hi'"):
        with pytest.raises(PyspeakerError, match="is set by pyspeaker for each job"):
            parse_cmd(f"slurm -p cpu {reserved}")
    assert parse_cmd("slurm -p cpu --mem=2G") == Launcher("slurm", ("-p", "cpu", "--mem=2G"))


def test_make_features_with_a_launcher_prefix_and_a_bad_cmd(tmp_path):
    d = make_data_dir(tmp_path)
    args = ["make-features", "--data-dir", d, "--conf", FBANK, "--nj", "2"]
    local = run_cli(*args, "--features-root", tmp_path / "f1", check=True).stdout.strip()
    prefixed = run_cli(*args, "--features-root", tmp_path / "f2", "--cmd", "nice -n 1", check=True).stdout.strip()
    a, b = FeatureStore(local), FeatureStore(prefixed)
    assert a.ids == b.ids and all((a[u] == b[u]).all() for u in a.ids)
    first_log = next((tmp_path / "f2").rglob("make_features.set1.1.log")).read_text()
    assert first_log.startswith("# nice -n 1 ") and "exit code 0" in first_log
    bad = run_cli(*args, "--features-root", tmp_path / "f3", "--cmd", "no-such-launcher")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: --cmd 'no-such-launcher': no-such-launcher not found on PATH (accepted: local, "
        "\"slurm [sbatch options]\", or a launcher prefix such as \"srun --ntasks=1\")")
