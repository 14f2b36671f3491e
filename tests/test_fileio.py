"""Atomic outputs under faults: a full disk, a killed writer, a replaced directory, fsync."""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pyspeaker import fileio
from pyspeaker.errors import PyspeakerError
from pyspeaker.fileio import atomic_dir, atomic_file, refuse_overlap, remove_stale_temporaries, write_text_atomic

from conftest import REPO, run_cli, write_embedding_dir

FBANK = str(REPO / "conf" / "fbank.conf")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: a real filesystem that fills up (needs root and mount)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _two_second_data_dir(root: Path, n: int = 20) -> Path:
    d, w = root / "data" / "train", root / "wav"
    d.mkdir(parents=True)
    w.mkdir()
    rng = np.random.default_rng(0)
    wav, u2s = [], []
    for i in range(n):
        utt = f"s{i % 2}-u{i:02d}"
        sf.write(w / f"{utt}.wav", 0.1 * rng.normal(size=32000), 16000, subtype="PCM_16")
        wav.append(f"{utt} {w / f'{utt}.wav'}\n")
        u2s.append(f"{utt} s{i % 2}\n")
    (d / "wav.scp").write_text("".join(sorted(wav)))
    (d / "utt2spk").write_text("".join(sorted(u2s)))
    return d


def test_full_disk_make_features_one_line_and_earlier_store_kept(tmp_path, small_disk):
    data = _two_second_data_dir(tmp_path)
    first = run_cli("make-features", "--data-dir", data, "--conf", FBANK, "--features-root", small_disk / "f")
    assert first.returncode == 0, first.stderr  # 1.3 MB of features fit once...
    store = Path(first.stdout.strip())
    before = _tree(store)
    again = run_cli("make-features", "--data-dir", data, "--conf", FBANK, "--features-root", small_disk / "f",
                    "--force")  # ...but not twice: the new store is written beside the old one
    assert again.returncode == 1
    assert "Traceback" not in again.stderr and "Segmentation" not in again.stderr
    assert again.stderr.strip().splitlines()[-1] == (
        f"error: {store}: cannot write this output: no space left on device; earlier results are kept")
    assert _tree(store) == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["train"]  # no temporary left behind


def test_full_disk_score_one_line_and_earlier_scores_kept(tmp_path, small_disk):
    ids = [f"u{i:04d}" for i in range(200)]
    emb = write_embedding_dir(tmp_path / "emb", ids, np.random.default_rng(0).normal(size=(200, 8)))
    trials = tmp_path / "trials"
    trials.write_text("".join(f"{a} {b} nontarget\n" for a in ids[:100] for b in ids[100:]))  # 10,000 trials
    out = small_disk / "scores.txt"
    out.write_text("earlier scores\n")
    (small_disk / "filler").write_bytes(b"\0" * (3 * 2 ** 20 - 200_000))  # leaves less than the 240 kB needed
    proc = run_cli("score", "--embeddings", emb, "--trials", trials, "--out", out)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {out}: cannot write this output: no space left on device; earlier results are kept")
    assert out.read_text() == "earlier scores\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "scores.txt"]


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    final = tmp_path / "scores.txt"
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = fileio._HOST
    stale_file = tmp_path / f".scores.txt.tmp-{host}-{dead.pid}-abc123"
    stale_dir = tmp_path / f".scores.txt.old-{host}-{dead.pid}-def456"
    alive = tmp_path / f".scores.txt.tmp-{host}-{os.getpid()}-ghi789"  # a writer still running
    other_host = tmp_path / f".scores.txt.tmp-otherhost-{dead.pid}-jkl000"  # cannot tell: kept
    stale_file.write_text("half")
    stale_dir.mkdir()
    (stale_dir / "x").write_text("old")
    alive.write_text("busy")
    other_host.write_text("?")
    write_text_atomic(final, "new\n")
    assert final.read_text() == "new\n"
    assert not stale_file.exists() and not stale_dir.exists()
    assert alive.exists() and other_host.exists()
    assert remove_stale_temporaries(final) == []


def test_killed_command_leaves_temporaries_that_the_next_run_removes(tmp_path):
    final = tmp_path / "out.txt"
    code = ("import sys, os; from pyspeaker.fileio import atomic_file\n"
            f"with atomic_file({str(final)!r}) as tmp:\n    tmp.write_text('partial'); os._exit(9)\n")
    assert subprocess.run([os.sys.executable, "-c", code]).returncode == 9  # dies inside the write
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.txt.tmp-")]
    assert len(left) == 1 and not final.exists()
    write_text_atomic(final, "done\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_replacing_a_directory_never_leaves_the_final_name_missing(tmp_path):
    final = tmp_path / "emb"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("0")
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (final / "v").is_file():
                missing.append(1)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for i in range(1, 300):
            with atomic_dir(final) as tmp:
                (tmp / "v").write_text(str(i))
    finally:
        stop.set()
        t.join()
    assert (final / "v").read_text() == "299"
    assert missing == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"]


def test_outputs_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_file(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
        name = str(tmp)
    assert synced[0] == name and synced[-1] == str(tmp_path)
    synced.clear()
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("y")
        folder = str(tmp)
    assert synced[:2] == [f"{folder}/f", folder]


def test_refuse_overlap_relations_and_symlinks(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "store")
    for out, relation in ((tmp_path / "store", "is"), (tmp_path / "link", "is"), (tmp_path, "contains"),
                          (tmp_path / "store" / "x", "lies inside")):
        with pytest.raises(PyspeakerError, match=f"--out {out} {relation} the input --features"):
            refuse_overlap({"--out": out}, {"--features": tmp_path / "store", "--none": None})
    refuse_overlap({"--out": tmp_path / "elsewhere"}, {"--features": tmp_path / "store"})
