"""scripts/download.py against a local HTTP server (loopback) and a real Pushgateway."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.scripted import LoopbackHTTP, QuietHandler

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download.py"
PAYLOAD = bytes(range(256)) * 1200  # 307200 bytes, not all the same
SHA = hashlib.sha256(PAYLOAD).hexdigest()
ETAG = '"v1"'


class FileServer(LoopbackHTTP):
    """Serves PAYLOAD at /data.bin with ETag and Range support. ``cut_after`` makes the
    next ``cuts`` responses stop after that many body bytes (a dropped connection)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.cut_after = 0
        self.cuts = 0
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with server.lock:
                    server.requests.append({"path": self.path, **dict(self.headers)})
                    cut = server.cut_after if server.cuts > 0 else 0
                    server.cuts -= 1
                if self.path != "/data.bin":
                    self.send_error(404, "Not Found")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and self.headers.get("If-Range", ETAG) == ETAG:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", ETAG)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if cut:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        super().__init__(Handler)


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()




def fresh_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "dl"
    dest.mkdir()
    return dest


def run_download(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBREPORT_GATEWAY": gateway.url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), "--retry-wait", "0", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_download_checksummed(tmp_path: Path, gateway: Gateway, files: FileServer) -> None:
    """The file arrives byte for byte under its URL name, nothing else is left in the
    directory, and bytes and files reach the gateway."""
    dest = fresh_dir(tmp_path)
    proc = run_download(gateway, "--dest", str(dest), f"{files.url}/data.bin#sha256={SHA}")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "data.bin").read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin"]
    s = gateway.samples("download")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_size_bytes"] == len(PAYLOAD)
    assert s["jobreport_last_items"] == 1
    assert s["download_transferred_bytes"] == len(PAYLOAD)
    assert "#sha256" not in files.requests[0]["path"]


def test_dropped_connection_resumes_with_range(tmp_path: Path, gateway: Gateway,
                                                files: FileServer) -> None:
    """A connection dropped halfway is resumed on the next attempt with Range and If-Range;
    only the missing bytes are fetched again."""
    dest = fresh_dir(tmp_path)
    files.cut_after, files.cuts = 100_000, 1
    proc = run_download(gateway, "--dest", str(dest), "-o", "copy.bin",
                        f"{files.url}/data.bin#sha256={SHA}")
    assert proc.returncode == 0, proc.stderr
    assert (dest / "copy.bin").read_bytes() == PAYLOAD
    assert len(files.requests) == 2
    assert files.requests[1]["Range"] == "bytes=100000-"
    assert files.requests[1]["If-Range"] == ETAG
    assert gateway.samples("download")["download_transferred_bytes"] == len(PAYLOAD)


def test_next_run_resumes_a_failed_run(tmp_path: Path, gateway: Gateway,
                                       files: FileServer) -> None:
    """When every attempt fails, the run is a failure and the partial file stays hidden;
    the next run fetches only the rest."""
    dest = fresh_dir(tmp_path)
    files.cut_after, files.cuts = 120_000, 2
    url = f"{files.url}/data.bin"
    proc = run_download(gateway, "--dest", str(dest), "--attempts", "2", url)
    assert proc.returncode == 1
    assert "next run resumes it" in proc.stderr
    assert not (dest / "data.bin").exists()
    # each of the two attempts got 120000 more bytes before the connection dropped
    assert (dest / ".data.bin.part").stat().st_size == 240_000
    assert gateway.samples("download")["jobreport_last_run_success"] == 0

    proc = run_download(gateway, "--dest", str(dest), url)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "data.bin").read_bytes() == PAYLOAD
    assert not (dest / ".data.bin.part").exists()
    s = gateway.samples("download")
    assert s["jobreport_last_run_success"] == 1
    assert s["download_transferred_bytes"] == len(PAYLOAD) - 240_000
    assert s['jobreport_runs_total{outcome="failure"}'] == 1


def test_checksum_mismatch_fails_and_discards(tmp_path: Path, gateway: Gateway,
                                              files: FileServer) -> None:
    """Bytes that do not match the checksum never appear under the final name."""
    dest = fresh_dir(tmp_path)
    wrong = "0" * 64
    proc = run_download(gateway, "--dest", str(dest), f"{files.url}/data.bin#sha256={wrong}")
    assert proc.returncode == 1
    assert "checksum mismatch" in proc.stderr and SHA in proc.stderr
    assert list(dest.iterdir()) == []
    s = gateway.samples("download")
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1


def test_present_file_is_not_fetched_again(tmp_path: Path, gateway: Gateway,
                                           files: FileServer) -> None:
    """A file already in place with the right checksum costs no request."""
    dest = fresh_dir(tmp_path)
    (dest / "data.bin").write_bytes(PAYLOAD)
    proc = run_download(gateway, "--dest", str(dest), f"{files.url}/data.bin#sha256={SHA}")
    assert proc.returncode == 0, proc.stderr
    assert files.requests == []
    s = gateway.samples("download")
    assert s["jobreport_last_items"] == 1
    assert s["download_transferred_bytes"] == 0


def test_http_error_is_one_line(tmp_path: Path, gateway: Gateway, files: FileServer) -> None:
    """A 404 is not retried and ends the run with a one-line message."""
    dest = fresh_dir(tmp_path)
    proc = run_download(gateway, "--dest", str(dest), f"{files.url}/missing.bin")
    assert proc.returncode == 1
    assert len(files.requests) == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"download: error: {files.url}/missing.bin: HTTP 404 Not Found"
    )
    assert gateway.samples("download")["jobreport_last_exit_code"] == 1
