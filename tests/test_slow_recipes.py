"""The full recipes as the README runs them, with quality margins (``./test.sh -m slow``; minutes each).

The fast suite runs the same code on tiny sizes; these check that the default settings learn: a
trained network well ahead of its random initialisation on the default corpus, and ahead of the
MFCC-statistics baseline on FSDD's closed set.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import SHARED, copy_recipe

pytestmark = pytest.mark.slow
FSDD = SHARED / "corpora" / "fsdd"


def _run(d: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["./run.sh", *args], cwd=d, env=dict(os.environ), capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _eer(system: Path, tag: str) -> float:
    return json.loads((system / "results/trials" / tag / "metrics.json").read_text())["eer"]


def test_default_recipe_trains_well_past_its_random_init(tmp_path):
    d = copy_recipe(tmp_path)
    _run(d)
    exp = d / "exp/tdnn"
    trained, untrained = _eer(exp, "cosine_none"), _eer(exp / "untrained", "cosine_none")
    assert trained < 15.0, trained  # README: the measured figure
    assert trained < untrained - 15.0, (trained, untrained)
    assert _eer(exp, "plda_none") < _eer(exp / "baseline", "plda_none") + 2.0  # about the baseline or better


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD not found at {FSDD}")
def test_fsdd_recipe_network_beats_the_statistics_baseline_on_the_closed_set(tmp_path):
    d = copy_recipe(tmp_path)
    _run(d, "--recipe", "fsdd", "--fsdd-dir", str(FSDD))
    closed = d / "exp/fsdd_tdnn/closed"
    network, baseline = _eer(closed, "cosine_none"), _eer(closed / "baseline", "cosine_none")
    assert network < 5.0 and baseline > 20.0, (network, baseline)  # README: 0.64 % vs 30.34 %
