"""Checked, resumable downloads of published models (``pyspeaker download-model``).

The table lists the pretrained voxceleb_trainer models its README links to. Their publishers give
no checksums, so each entry's ``sha256`` stays None until one is known: such a download is reported
as unverified, and the computed sha256 is printed and written beside the file (``NAME.sha256``, in
``sha256sum`` format) so later downloads can be checked against it (``--sha256``).

A download goes to ``OUT/NAME.part`` first; an interrupted transfer keeps it, and the next run asks
the server for the rest (``Range: bytes=N-``; a server that ignores the range and sends the whole
file makes the download start again from byte 0). The file appears under its final name only once
its sha256 matches; on a mismatch the ``.part`` is deleted and nothing is left under the final name.
Only the standard library speaks HTTP here (urllib).
"""
from __future__ import annotations


import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pyspeaker.errors import ConfigError, DataError
from pyspeaker.fileio import sha256_file
from pyspeaker.log import get_logger

log = get_logger("pyspeaker.download")

CHUNK = 1 << 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    url: str
    sha256: str | None  # None: not published, so a download cannot be verified
    description: str


# The models clovaai/voxceleb_trainer's README links to (current and earlier versions of it). No
# checksum is published for any of them. RawNet3's weights are a git submodule of that repository
# (models/weights/RawNet3/model.pt), not a download, so they are not listed.
MODELS: dict[str, PublishedModel] = {m.name: m for m in (
    PublishedModel("baseline_lite_ap.model", "https://www.robots.ox.ac.uk/~joon/data/baseline_lite_ap.model", None,
                   "ResNetSE34L, SAP, angleproto, log_input (EER 2.1792 on VoxCeleb1-O, eval_frames 400)"),
    PublishedModel("baseline_v2_ap.model", "https://www.robots.ox.ac.uk/~joon/data/baseline_v2_ap.model", None,
                   "ResNetSE34V2, ASP, n_mels 64, softmaxproto, log_input (EER 1.1771)"),
    PublishedModel("baseline_v2_smproto.model", "https://www.robots.ox.ac.uk/~joon/data/baseline_v2_smproto.model",
                   None, "ResNetSE34V2, ASP, n_mels 64, softmaxproto, log_input (EER 1.0180)"),
    PublishedModel("baseline_half_ap.model", "https://www.robots.ox.ac.uk/~joon/data/baseline_half_ap.model", None,
                   "ResNetSE34Half, ASP, n_mels 64 (older README; EER 1.6596)"),
)}


def is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def check_sha256(text: str) -> str:
    hex_ = text.strip().lower()
    if not _HEX64.match(hex_):
        raise ConfigError(f"--sha256 must be 64 hexadecimal digits, got {text!r}")
    return hex_


def resolve(name_or_url: str, sha256: str | None = None) -> tuple[str, str, str | None]:
    """``(file name, URL, expected sha256 or None)`` for a table name or an http(s) URL; ``sha256``
    (from ``--sha256``) overrides the table's."""
    expected = None if sha256 is None else check_sha256(sha256)
    if name_or_url in MODELS:
        m = MODELS[name_or_url]
        return m.name, m.url, expected or m.sha256
    if is_url(name_or_url):
        name = unquote(urlparse(name_or_url).path.rstrip("/").rsplit("/", 1)[-1])
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ConfigError(f"cannot tell a file name from the URL {name_or_url!r}: it must end in one")
        known = next((m for m in MODELS.values() if m.url == name_or_url), None)
        return name, name_or_url, expected or (known.sha256 if known else None)
    raise ConfigError(f"unknown model {name_or_url!r}: give an http(s):// URL or one of "
                      f"{', '.join(MODELS)} (see --list)")


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``(first byte, total or None)`` of a ``Content-Range: bytes A-B/T`` header."""
    m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _transfer(url: str, part: Path, timeout: float, progress: bool | None) -> None:
    """Bring ``part`` up to the whole file (resuming what is there); raise DataError when the
    transfer fails, keeping what arrived."""
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "pyspeaker-download-model", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left beyond what we have: the .part may be whole
            m = re.match(r"^\s*bytes\s+\*/(\d+)\s*$", e.headers.get("Content-Range") or "")
            if m and int(m.group(1)) == offset:
                log.info("%s: %s already holds all %d bytes", url, part.name, offset)
                return
            part.unlink(missing_ok=True)
            raise DataError(f"the server refused to resume at byte {offset} (HTTP 416); the partial "
                            f"download was removed: run again to start over", path=url) from None
        raise DataError(f"download failed: HTTP {e.code} {e.reason}", path=url) from None
    except (urllib.error.URLError, HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"download failed: {reason}", path=url) from None

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and status == 206:
            got = _content_range(resp.headers.get("Content-Range"))
            if got is None or got[0] != offset:
                part.unlink(missing_ok=True)
                raise DataError(f"asked to resume at byte {offset}, the server answered "
                                f"{resp.headers.get('Content-Range')!r}; the partial download was removed: "
                                f"run again to start over", path=url)
            mode, start = "ab", offset
            log.info("resuming %s at byte %d", url, offset)
        elif status in (200, 206):
            if offset:
                log.info("%s: the server ignored the range request (HTTP %d): starting again from byte 0",
                         url, status)
            mode, start = "wb", 0
        else:
            raise DataError(f"download failed: unexpected HTTP {status}", path=url)
        total = None if length is None else start + length
        received = 0
        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem,
                   disable=True if progress is False else None, leave=False, dynamic_ncols=True)
        try:
            with open(part, mode) as f:
                try:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        received += len(block)
                        bar.update(len(block))
                except (HTTPException, OSError) as e:
                    f.flush()
                    raise DataError(f"transfer interrupted after {start + received} bytes ({e}); "
                                    f"{part.name} keeps them: run again to resume", path=url) from None
                f.flush()
                os.fsync(f.fileno())
        finally:
            bar.close()
        if length is not None and received < length:
            raise DataError(f"transfer interrupted after {start + received} of {total} bytes; {part.name} keeps "
                            f"them: run again to resume", path=url)


def download(url: str, out_dir: str | os.PathLike, name: str, sha256: str | None = None, *,
             timeout: float = 60.0, progress: bool | None = None) -> tuple[Path, str, bool]:
    """Download ``url`` to ``out_dir/name``, resumably, checked against ``sha256`` when given.

    Returns ``(final path, computed sha256, verified)``. A mismatch deletes the partial file and
    raises a DataError naming both checksums; nothing exists under the final name then.
    """
    from pyspeaker.fileio import fsync_path, write_error, write_text_atomic

    out_dir = Path(out_dir)
    final = out_dir / name
    part = out_dir / f"{name}.part"
    if final.exists():
        actual = sha256_file(final)
        if sha256 is not None and actual != sha256:
            raise DataError(f"already exists with sha256 {actual}, not the expected {sha256}: remove it to "
                            f"download again", path=final)
        log.info("%s already exists (sha256 %s%s): not downloaded again", final, actual,
                 ", as expected" if sha256 else "")
        if sha256 is None:
            write_text_atomic(out_dir / f"{name}.sha256", f"{actual}  {name}\n")
        return final, actual, sha256 is not None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(out_dir, e) from None
    _transfer(url, part, timeout, progress)
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        part.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was deleted",
                        path=url)
    try:
        os.replace(part, final)
        fsync_path(final.parent)
    except OSError as e:
        raise write_error(final, e) from None
    if sha256 is None:
        write_text_atomic(out_dir / f"{name}.sha256", f"{actual}  {name}\n")
    return final, actual, sha256 is not None


def table_lines() -> list[str]:
    width = max(len(n) for n in MODELS)
    return [f"{m.name:<{width}}  {m.sha256 or 'sha256-unknown':<14}  {m.url}  ({m.description})"
            for m in MODELS.values()]
