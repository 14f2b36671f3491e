"""--cmd slurm on a real Slurm cluster: a single-node one on this machine (utils/slurm_single_node.sh).

The module's fixture installs Slurm when missing (root, apt-get), starts munged, slurmctld and slurmd
from a private state dir on free ports, and stops them at the end; without root or without Slurm the
tests skip with the reason. Each test compares a run through Slurm with the same run done locally.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pyspeaker.store import FeatureStore
from pyspeaker.store.embeddings import load_embeddings
from pyspeaker.training.checkpoint import load_checkpoint

from conftest import REPO, run_cli
from test_make_features import FBANK, make_data_dir
from test_parallel import processes_with, token, wait_for

SCRIPT = REPO / "utils" / "slurm_single_node.sh"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
           PYTHONUNBUFFERED="1")


def _free_port_pair() -> int:
    """A port p with p + 1 also free (slurmctld, slurmd), so a cluster already running here is no obstacle."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _reason(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF of a running single-node cluster (set in the environment of the tests' commands)."""
    if os.geteuid() != 0:
        pytest.skip("Slurm tests: the single-node cluster (utils/slurm_single_node.sh) needs root")
    env = dict(ENV, PYSPEAKER_SLURM_DIR=str(tmp_path_factory.mktemp("slurm")), PYSPEAKER_SLURM_PORT=str(_free_port_pair()))
    proc = subprocess.run(["bash", str(SCRIPT), "install"], env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.skip(f"Slurm tests: no Slurm here ({_reason(proc)})")
    proc = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)
        pytest.skip(f"Slurm tests: the single-node cluster did not start ({_reason(proc)})")
    conf = proc.stdout.strip()
    ENV["SLURM_CONF"] = conf
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", conf)  # for run_cli, which passes os.environ on
            yield conf
    finally:
        ENV.pop("SLURM_CONF", None)
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def cluster_state() -> str:
    """What the cluster says, for failure messages: queue, node state, the daemons' last log lines."""
    out = []
    for argv in (["squeue", "-o", "%i %j %T %R"], ["sinfo", "-N", "-o", "%N %T %E"]):
        out.append(subprocess.run(argv, env=ENV, capture_output=True, text=True).stdout)
    state = Path(ENV.get("SLURM_CONF", "/nonexistent")).parent
    for name in ("slurmctld.log", "slurmd.log"):
        if (state / name).is_file():
            out.append(f"--- {name}\n" + "".join((state / name).read_text().splitlines(keepends=True)[-15:]))
    return "\n".join(out)


def slurm_job_id(log: Path) -> int:
    m = re.search(r"^# slurm job (\d+)$", log.read_text(), re.M)
    assert m, f"{log} does not name a Slurm job:\n{log.read_text()}"
    return int(m.group(1))


def test_make_features_through_slurm_equals_local(slurm, tmp_path):
    d = make_data_dir(tmp_path)
    args = ["make-features", "--data-dir", d, "--conf", FBANK]
    local = FeatureStore(run_cli(*args, "--features-root", tmp_path / "f1", check=True).stdout.strip())
    proc = run_cli(*args, "--features-root", tmp_path / "f2", "--nj", "2", "--cmd", "slurm", check=True)
    store = FeatureStore(proc.stdout.strip())
    assert store.ids == local.ids and len(store) == 6
    for utt in local.ids:
        np.testing.assert_array_equal(store[utt], local[utt])
    logs = sorted((tmp_path / "f2" / store.feat_id / "log").glob("make_features.set1.*.log"))
    assert [p.name for p in logs] == ["make_features.set1.1.log", "make_features.set1.2.log"]
    ids = [slurm_job_id(p) for p in logs]
    assert len(set(ids)) == 2  # two Slurm jobs, each with its own log
    for p in logs:
        text = p.read_text()
        assert "# submitted with: sbatch --wait --parsable --output=" in text and "exit code 0" in text


def test_extract_through_slurm_equals_local(slurm, tmp_path, speaker_store):
    from pyspeaker.models import build_model
    from pyspeaker.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    options = {"name": "ResNetSE34L", "nOut": 16, "n_mels": 20}
    model = build_model(**options)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "epoch": 0, "feat_id": "test_0000", "model_options": options})
    common = ["extract", "--checkpoint", ckpt, "--features", speaker_store, "--threads", "1"]
    run_cli(*common, "--out", tmp_path / "local" / "emb", check=True)
    run_cli(*common, "--out", tmp_path / "slurm" / "emb", "--nj", "2", "--cmd", "slurm", check=True)
    ids_local, emb_local = load_embeddings(tmp_path / "local" / "emb")
    ids, emb = load_embeddings(tmp_path / "slurm" / "emb")
    assert ids == ids_local and emb.shape == (24, 16)
    np.testing.assert_allclose(emb, emb_local, rtol=0, atol=1e-6)
    logs = sorted((tmp_path / "slurm" / "log").iterdir())
    assert [p.name for p in logs] == ["extract.emb.1.log", "extract.emb.2.log"]
    assert all(slurm_job_id(p) > 0 for p in logs)


def train(store: Path, exp: Path, *options: str) -> subprocess.CompletedProcess:
    overrides = ("train.max_epoch=1 data.batch_size=3 data.crop_frames=30 model.nOut=16 optim.lr=0.005 "
                 "loss.name=angleproto")
    argv = ["bash", "steps/train.sh", "--ngpu", "0", "--nproc", "2", "--overrides", overrides, *options, str(store),
            str(exp)]
    try:
        return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{e}\n{e.stderr}\n{cluster_state()}") from None


def test_two_process_training_through_slurm_equals_local(slurm, tmp_path, speaker_store):
    local = train(speaker_store, tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    proc = train(speaker_store, tmp_path / "slurm", "--cmd", "slurm")
    assert proc.returncode == 0, proc.stderr[-3000:] + cluster_state()
    exp = tmp_path / "slurm"
    assert f"job log {exp}/log/train_job.log" in proc.stderr
    job_log = (exp / "log" / "train_job.log").read_text()
    job = slurm_job_id(exp / "log" / "train_job.log")
    # one allocation: its batch script started this script once per node through srun, with Slurm's ranks
    assert "--nodes=1 --ntasks-per-node=1 --cpus-per-task=2" in job_log
    assert f"slurm job {job}: node 0 of 1 ({socket.gethostname().split('.')[0]}), master " in job_log
    assert "torchrun: 1 node(s) x 2 processes (CPU, gloo)" in job_log and "exit code 0" in job_log
    assert "all 2 processes end with identical weights" in (exp / "train.log").read_text()
    a = load_checkpoint(tmp_path / "local" / "checkpoints" / "final.pt")
    b = load_checkpoint(exp / "checkpoints" / "final.pt")
    assert a["epoch"] == b["epoch"] == 1 and a["world_size"] == b["world_size"] == 2
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():  # the same training, bit for bit
        assert torch.equal(tensor, b["model"][name]), name


def test_failing_slurm_jobs_exit_1_naming_their_log(slurm, tmp_path, speaker_store):
    d = make_data_dir(tmp_path)
    sf.write(tmp_path / "wav" / "s1-u1.wav", np.zeros(8000), 8000, subtype="PCM_16")  # wrong sample rate
    args = ["make-features", "--data-dir", d, "--conf", FBANK, "--features-root", tmp_path / "f", "--nj", "2"]
    proc = run_cli(*args, "--cmd", "slurm")
    assert proc.returncode == 1
    log = next((tmp_path / "f").rglob("make_features.set1.2.log"))
    assert f"error: 1 of 2 jobs failed (first: job 2, exit 1, log {log}):" in proc.stderr
    assert "wav.scp:5: sample rate 8000 Hz" in proc.stderr and "wav.scp:5: sample rate 8000 Hz" in log.read_text()
    # a submission Slurm refuses: sbatch's own message is in the job's log and in the error
    proc = run_cli(*args, "--cmd", "slurm --partition=no-such-partition")
    assert proc.returncode == 1
    assert "error: 2 of 2 jobs failed (first: job 1, exit 1, log " in proc.stderr
    assert "sbatch: error: Batch job submission failed: Invalid partition name specified" in proc.stderr
    # training: the job's failure names the job log
    exp = tmp_path / "exp"
    proc = subprocess.run(["bash", "steps/train.sh", "--cmd", "slurm", "--overrides", "model.name=Nope",
                           str(speaker_store), str(exp)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert f"error: 1 of 1 jobs failed (first: job 1, exit 1, log {exp}/log/train_job.log):" in proc.stderr
    assert "error: --set model.name=Nope: unknown model 'Nope'" in proc.stderr


def test_a_killed_parent_cancels_its_slurm_jobs(slurm, tmp_path):
    t = token()
    code = ("import sys; from pathlib import Path; from pyspeaker.parallel import run_jobs; "
            "run_jobs('slurm', [['sleep', sys.argv[1]]], [Path(sys.argv[2])])")
    parent = subprocess.Popen([sys.executable, "-c", code, t, str(tmp_path / "job.log")], env=ENV,
                              stderr=subprocess.PIPE, text=True)

    def queue() -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i %T"], env=ENV, capture_output=True, text=True).stdout

    try:
        assert wait_for(lambda: "RUNNING" in queue() and processes_with(f"sleep {t}"), timeout=30), queue()
        job = queue().split()[0]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 143
        assert f"terminated: stopping 1 running job(s), scancel {job}" in parent.stderr.read()
        assert wait_for(lambda: job not in queue() and not processes_with(f"sleep {t}"), timeout=20), queue()
    finally:
        parent.kill()
        subprocess.run(["scancel", "--name=job"], env=ENV, capture_output=True)
