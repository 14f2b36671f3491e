"""Writing Kaldi ark/scp pairs with kaldiio so that the scp names the final ark path.

Outputs are built in a temporary directory and renamed into place; kaldiio records the ark path it
was given in every scp line, so the scp is rewritten to point at the ark's final location.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np


def write_ark_scp(tmp_dir: Path, final_dir: Path, stem: str, items: Iterable[tuple[str, np.ndarray]],
                  compression_method: int | None = None) -> int:
    """Write ``<stem>.ark`` + ``<stem>.scp`` into ``tmp_dir``; scp lines point at ``final_dir``."""
    import kaldiio

    tmp_ark, tmp_scp = tmp_dir / f"{stem}.ark", tmp_dir / f"{stem}.scp"
    n = 0
    spec = f"ark,scp:{tmp_ark},{tmp_scp}"
    with kaldiio.WriteHelper(spec, compression_method=compression_method) as writer:
        for key, mat in items:
            writer(key, np.ascontiguousarray(mat, dtype=np.float32))
            n += 1
    final_ark = os.path.abspath(final_dir / f"{stem}.ark")
    lines = tmp_scp.read_text().splitlines()
    fixed = []
    for line in lines:
        key, loc = line.split(" ", 1)
        offset = loc.rsplit(":", 1)[1]
        fixed.append(f"{key} {final_ark}:{offset}")
    tmp_scp.write_text("".join(f"{x}\n" for x in fixed))
    return n
