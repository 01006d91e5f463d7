"""scripts/download_async.py against a local HTTP server (loopback) and a real Pushgateway:
several files at once, one failing; each file its own run and group."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.scripted import LoopbackHTTP, QuietHandler

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "download_async.py"
FILES = {"/a.bin": bytes(range(256)) * 800, "/b.csv": b"id,name\n" + b"1,x\n" * 5000,
         "/c.txt": b"plain text\n" * 100}


class Server(LoopbackHTTP):
    """Serves FILES (sized), /chunked.txt (chunked), /moved (a redirect to /a.bin); anything
    else is a 404. Every request path is kept."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/a.bin")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/chunked.txt":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in (b"hello ", b"chunked ", b"world\n"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                elif self.path in FILES:
                    body = FILES[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404, "Not Found")

        super().__init__(Handler)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def run(tmp_path: Path, gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBREPORT_GATEWAY": gateway.url, "PYTHONPATH": str(ROOT),
           "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def history(tmp_path: Path) -> list[dict[str, object]]:
    env = {**os.environ, "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}
    proc = subprocess.run([str(Path(sys.executable).parent / "jobreport"), "history", "--json"],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(proc.stdout))


def test_several_files_at_once_one_failing(tmp_path: Path, gateway: Gateway,
                                           server: Server) -> None:
    """Every file that exists arrives byte for byte (a checksummed one, a redirect, a
    chunked body); the missing one fails alone: exit 1 with one line naming it, a failed
    run in its own group with the error kept, the others succeeded with their sizes."""
    dest = tmp_path / "dl"
    dest.mkdir()
    sha = hashlib.sha256(FILES["/b.csv"]).hexdigest()
    proc = run(tmp_path, gateway, "--dest", str(dest), "--expect-every", "1h",
               f"{server.url}/a.bin", f"{server.url}/b.csv#sha256={sha}",
               f"{server.url}/missing.bin", f"{server.url}/chunked.txt", f"{server.url}/moved")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"download_async: error: missing.bin: {server.url}/missing.bin: HTTP 404 Not Found"]
    assert (dest / "a.bin").read_bytes() == FILES["/a.bin"]
    assert (dest / "b.csv").read_bytes() == FILES["/b.csv"]
    assert (dest / "chunked.txt").read_bytes() == b"hello chunked world\n"
    assert (dest / "moved").read_bytes() == FILES["/a.bin"]
    assert sorted(p.name for p in dest.iterdir()) == ["a.bin", "b.csv", "chunked.txt", "moved"]
    for name, size in (("a.bin", len(FILES["/a.bin"])), ("b.csv", len(FILES["/b.csv"])),
                       ("chunked.txt", 20)):
        s = gateway.samples("download-async", file=name)
        assert s["jobreport_last_run_success"] == 1
        assert s["jobreport_last_size_bytes"] == size
        assert s["jobreport_expected_interval_seconds"] == 3960
    failed = gateway.samples("download-async", file="missing.bin")
    assert failed["jobreport_last_run_success"] == 0
    assert failed["jobreport_last_exit_code"] == 1
    [record] = [r for r in history(tmp_path) if r["outcome"] == "failure"]
    assert record["labels"] == {"file": "missing.bin", "instance": record["labels"]["instance"]}
    # the error's class is download.py's (module-qualified, as for any class not in __main__)
    assert record["error"] == (
        f"download.DownloadError: {server.url}/missing.bin: HTTP 404 Not Found")


def test_a_checksum_mismatch_leaves_nothing_behind(tmp_path: Path, gateway: Gateway,
                                                   server: Server) -> None:
    """Bytes that do not match their checksum never appear under the file's name, and the
    run says why."""
    dest = tmp_path / "dl"
    dest.mkdir()
    proc = run(tmp_path, gateway, "--dest", str(dest), f"{server.url}/c.txt#sha256={'0' * 64}")
    assert proc.returncode == 1
    assert "checksum mismatch" in proc.stderr
    assert list(dest.iterdir()) == []
    [record] = history(tmp_path)
    assert record["outcome"] == "failure"
    assert "checksum mismatch" in str(record["error"])
