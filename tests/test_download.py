"""`pyspeaker download-model` against a local HTTP server on 127.0.0.1 serving a fixture: a full
checked download, an interrupted transfer resumed with a Range request, a wrong checksum, a server
that ignores Range, an unknown checksum, an unknown name and the built-in table."""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest

FIXTURE = hashlib.sha256(b"seed").digest() * 10_000  # 320 kB of incompressible-looking bytes
FIXTURE_SHA = hashlib.sha256(FIXTURE).hexdigest()
CUT = 100_000  # bytes sent before the connection drops, in an interrupted transfer
NAME = "fixture.model"


def cli(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m pyspeaker ARGS`` as ``conftest.run_cli`` runs it, with a time limit, and no proxy
    in the way of the loopback server."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", no_proxy="127.0.0.1,localhost",
               NO_PROXY="127.0.0.1,localhost")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-m", "pyspeaker", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class Server:
    """A threaded HTTP server on 127.0.0.1 serving FIXTURE at /fixture.model. ``cut_next`` makes the
    next response stop after CUT bytes (connection closed); ``ignore_range`` answers every request
    with 200 and the whole body. ``ranges`` records each request's Range header (None without)."""

    def __init__(self):
        self.cut_next = False
        self.ignore_range = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 20

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.ranges.append(self.headers.get("Range"))
                if self.path != f"/{NAME}":
                    self.send_error(404)
                    return
                start = 0
                want = self.headers.get("Range")
                if want and not server.ignore_range:
                    start = int(want.removeprefix("bytes=").split("-")[0])
                    if start >= len(FIXTURE):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(FIXTURE)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(FIXTURE) - 1}/{len(FIXTURE)}")
                else:
                    self.send_response(200)
                body = FIXTURE[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if server.cut_next:
                    server.cut_next = False
                    self.wfile.write(body[:CUT])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_full_download_verified(server, tmp_path):
    out = tmp_path / "models"
    proc = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA, "--timeout", 10)
    assert proc.returncode == 0, proc.stderr
    assert (out / NAME).read_bytes() == FIXTURE
    assert not (out / f"{NAME}.part").exists()
    assert proc.stdout.strip() == f"{FIXTURE_SHA}  {out / NAME}"
    assert "verified" in proc.stderr and "could not be verified" not in proc.stderr
    assert server.ranges == [None]
    # a second run finds the file and checks it, without downloading again
    again = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA.upper(), "--timeout", 10)
    assert again.returncode == 0, again.stderr
    assert server.ranges == [None]


def test_interrupted_transfer_resumes(server, tmp_path):
    out = tmp_path / "models"
    server.cut_next = True
    first = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA, "--timeout", 10)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    errors = _errors(first)
    assert len(errors) == 1 and first.stderr.strip().splitlines()[-1] == errors[0], first.stderr
    assert "interrupted" in errors[0] and "resume" in errors[0], errors[0]
    assert (out / f"{NAME}.part").read_bytes() == FIXTURE[:CUT]
    assert not (out / NAME).exists()

    second = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA, "--timeout", 10)
    assert second.returncode == 0, second.stderr
    assert server.ranges == [None, f"bytes={CUT}-"]
    assert (out / NAME).read_bytes() == FIXTURE
    assert not (out / f"{NAME}.part").exists()


def test_complete_part_is_finished_on_416(server, tmp_path):
    """A .part that already holds the whole file (killed before the rename): the server answers 416
    to the range request, and the file is verified and renamed."""
    out = tmp_path / "models"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(FIXTURE)
    proc = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA, "--timeout", 10)
    assert proc.returncode == 0, proc.stderr
    assert server.ranges == [f"bytes={len(FIXTURE)}-"]
    assert (out / NAME).read_bytes() == FIXTURE


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    out = tmp_path / "models"
    wrong = "0" * 64
    proc = cli("download-model", server.url, "--out", out, "--sha256", wrong, "--timeout", 10)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = _errors(proc)
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert wrong in errors[0] and FIXTURE_SHA in errors[0], errors[0]
    assert not (out / NAME).exists()
    assert not (out / f"{NAME}.part").exists()
    assert not (out / f"{NAME}.sha256").exists()


def test_server_ignoring_range_restarts(server, tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / f"{NAME}.part").write_bytes(b"stale bytes, not the start of the fixture" * 100)
    server.ignore_range = True
    proc = cli("download-model", server.url, "--out", out, "--sha256", FIXTURE_SHA, "--timeout", 10)
    assert proc.returncode == 0, proc.stderr
    assert server.ranges[0] and server.ranges[0].startswith("bytes=")  # it asked to resume
    assert "ignored the range" in proc.stderr
    assert (out / NAME).read_bytes() == FIXTURE
    assert not (out / f"{NAME}.part").exists()


def test_unknown_checksum_is_recorded(server, tmp_path):
    out = tmp_path / "models"
    proc = cli("download-model", server.url, "--out", out, "--no-progress", "--timeout", 10)
    assert proc.returncode == 0, proc.stderr
    assert (out / NAME).read_bytes() == FIXTURE
    assert "[WARNING]" in proc.stderr and "could not be verified" in proc.stderr and FIXTURE_SHA in proc.stderr
    assert (out / f"{NAME}.sha256").read_text() == f"{FIXTURE_SHA}  {NAME}\n"
    assert FIXTURE_SHA in proc.stdout
    # run again on the existing file: not downloaded again, still reported unverified and recorded
    (out / f"{NAME}.sha256").unlink()
    again = cli("download-model", server.url, "--out", out, "--no-progress", "--timeout", 10)
    assert again.returncode == 0, again.stderr
    assert len(server.ranges) == 1 and "could not be verified" in again.stderr
    assert (out / f"{NAME}.sha256").read_text() == f"{FIXTURE_SHA}  {NAME}\n"


def test_http_error_is_one_line(server, tmp_path):
    proc = cli("download-model", server.url.replace(NAME, "missing.model"), "--out", tmp_path / "m", "--timeout", 10)
    assert proc.returncode == 1
    errors = _errors(proc)
    assert len(errors) == 1 and "404" in errors[0], proc.stderr
    assert not (tmp_path / "m" / "missing.model").exists()


def test_unknown_name_lists_the_table(tmp_path):
    proc = cli("download-model", "no_such.model", "--out", tmp_path / "m")
    assert proc.returncode == 1
    errors = _errors(proc)
    assert len(errors) == 1 and proc.stderr.strip().splitlines() == errors, proc.stderr
    assert "no_such.model" in errors[0]
    for name in ("baseline_lite_ap.model", "baseline_v2_ap.model", "baseline_v2_smproto.model"):
        assert name in errors[0]
    assert not (tmp_path / "m").exists()


def test_bad_sha256_option(tmp_path):
    proc = cli("download-model", "baseline_lite_ap.model", "--out", tmp_path / "m", "--sha256", "xyz")
    assert proc.returncode == 1
    assert len(_errors(proc)) == 1 and "--sha256" in _errors(proc)[0], proc.stderr


def test_list_names_the_published_models():
    proc = cli("download-model", "--list")
    assert proc.returncode == 0, proc.stderr
    assert "baseline_lite_ap.model" in proc.stdout
    assert "https://www.robots.ox.ac.uk/~joon/data/baseline_lite_ap.model" in proc.stdout
    assert "baseline_v2_ap.model" in proc.stdout


def test_table_checksums_are_none_or_hex():
    from pyspeaker.download import MODELS

    assert {"baseline_lite_ap.model", "baseline_v2_ap.model"} <= set(MODELS)
    for m in MODELS.values():
        assert m.url.endswith("/" + m.name)
        assert m.sha256 is None or (len(m.sha256) == 64 and int(m.sha256, 16) >= 0)
