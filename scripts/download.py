#!/usr/bin/env python3
"""Download files and report the run to the Pushgateway through jobreport.

    download.py --dest /srv/data 'https://example.org/genome.fa.gz#sha256=9f86d0...'
    download.py --dest /srv/data -o latest.csv https://example.org/export.csv

Each file is streamed to ``.<name>.part`` in the destination directory, checked (length, and
SHA-256 when the URL ends in ``#sha256=<hex>``, the convention pip uses), fsynced and renamed
into place: the destination never holds a partial file. An interrupted download resumes where
it stopped (HTTP Range with If-Range, on the next attempt or the next run) when the server
allows it and the partial data can be checked (an ETag/Last-Modified validator or a checksum).
A file already present with the expected checksum is not downloaded again.

Reported through ``job_metrics("download")``: the bytes of the files in place
(jobreport_last_size_bytes), the number of files (jobreport_last_items) and the gauge
``download_transferred_bytes`` (what actually came over the network this run). Under
``jobreport run --job download`` the figures join the wrapper's run (one run, not two).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import requests
    import urllib3
except ImportError:  # jobreport itself does not need requests: this example does
    sys.exit("download.py needs requests: pip install 'jobreport[examples]' (or requests)")

from jobreport import job_metrics

PROG = "download"
CHUNK = 1 << 16
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class DownloadError(Exception):
    """The download failed for good; the message says why."""


class Retryable(Exception):
    """A transient failure: the next attempt resumes from the partial file."""


@dataclass
class Target:
    url: str  # without the #sha256= fragment
    sha256: str | None
    path: Path


@dataclass
class Fetched:
    size: int  # bytes of the file in place
    transferred: int  # bytes received over the network in this run


def parse_target(spec: str, dest: Path, output: str | None) -> Target:
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"{spec}: only http:// and https:// URLs are supported")
    sha = None
    if parts.fragment:
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", parts.fragment)
        if not m:
            raise DownloadError(f"{spec}: the fragment must be #sha256=<64 hex digits>")
        sha = m.group(1).lower()
    url = urlunsplit(parts._replace(fragment=""))
    name = output or unquote(parts.path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name:
        raise DownloadError(f"{spec}: cannot tell a file name from the URL; give -o NAME")
    return Target(url, sha, dest / name)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Download:
    """One file: ``.<name>.part`` holds the bytes so far, ``.<name>.part.validator`` the
    ETag or Last-Modified they came with (so that a resumed request can ask for the same
    version of the file with If-Range)."""

    def __init__(self, target: Target, session: requests.Session, timeout: float) -> None:
        self.target = target
        self.session = session
        self.timeout = timeout
        self.part = target.path.with_name(f".{target.path.name}.part")
        self.validator_file = self.part.with_name(self.part.name + ".validator")
        self.transferred = 0

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.validator_file.unlink(missing_ok=True)

    def attempt(self) -> None:
        """Fetch what is missing into the part file; raise Retryable for transient trouble."""
        have = self.part.stat().st_size if self.part.exists() else 0
        validator = self.validator_file.read_text() if self.validator_file.exists() else ""
        headers = {}
        if have and (validator or self.target.sha256):
            headers["Range"] = f"bytes={have}-"
            if validator:
                headers["If-Range"] = validator
        elif have:
            have = 0  # nothing to check resumed data against: start again
        try:
            # identity: byte ranges must count the file's own bytes, not a compressed form
            headers["Accept-Encoding"] = "identity"
            with self.session.get(self.target.url, headers=headers, stream=True,
                                  timeout=self.timeout) as resp:
                offset = self._offset(resp, have)
                if offset is None:
                    return  # 416 on a complete part file
                etag = resp.headers.get("ETag", "")
                new_validator = etag if etag and not etag.startswith("W/") else (
                    resp.headers.get("Last-Modified", ""))
                if offset == 0:
                    self.validator_file.write_text(new_validator)
                with open(self.part, "r+b" if offset else "wb") as out:
                    out.seek(offset)
                    out.truncate()
                    try:
                        # raw reads: every byte that arrived is written before a dropped
                        # connection raises (iter_content would lose the last chunk)
                        while chunk := resp.raw.read(CHUNK):
                            out.write(chunk)
                            self.transferred += len(chunk)
                    finally:
                        out.flush()
                        os.fsync(out.fileno())
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            raise Retryable(f"{self.target.url}: {exc}") from exc

    def _offset(self, resp: requests.Response, have: int) -> int | None:
        """Where the response body starts in the file, or None when nothing is missing."""
        if resp.status_code == 206:
            m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == have:
                return have
            self.discard()
            raise Retryable(f"{self.target.url}: unexpected Content-Range; starting again")
        if resp.status_code == 416:
            m = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == have:
                return None
            self.discard()
            raise Retryable(f"{self.target.url}: partial file does not fit; starting again")
        if resp.status_code == 200:
            return 0
        if resp.status_code in RETRY_STATUS:
            raise Retryable(f"{self.target.url}: HTTP {resp.status_code}")
        raise DownloadError(f"{self.target.url}: HTTP {resp.status_code} {resp.reason}")

    def finish(self) -> int:
        """Verify the part file and move it into place; return its size."""
        if self.target.sha256:
            got = sha256_of(self.part)
            if got != self.target.sha256:
                self.discard()
                raise DownloadError(
                    f"{self.target.url}: checksum mismatch (expected {self.target.sha256}, "
                    f"got {got}); the partial file was removed, run again to retry"
                )
        size = self.part.stat().st_size
        os.replace(self.part, self.target.path)
        self.validator_file.unlink(missing_ok=True)
        fsync_dir(self.target.path.parent)
        return size


def fetch(target: Target, session: requests.Session, *, attempts: int, wait: float,
          timeout: float) -> Fetched:
    if target.sha256 and target.path.is_file() and sha256_of(target.path) == target.sha256:
        return Fetched(target.path.stat().st_size, 0)
    job = Download(target, session, timeout)
    for attempt in range(1, attempts + 1):
        try:
            job.attempt()
            break
        except Retryable as exc:
            if attempt == attempts:
                raise DownloadError(
                    f"{exc} (after {attempts} attempts; the partial file is kept and the "
                    "next run resumes it)"
                ) from exc
            print(f"{PROG}: {exc}; retrying", file=sys.stderr)
            time.sleep(wait * attempt)
    return Fetched(job.finish(), job.transferred)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Download files and report the run.")
    p.add_argument("urls", nargs="+", metavar="URL",
                   help="http(s) URL, optionally ending in #sha256=<hex>")
    p.add_argument("--dest", type=Path, default=Path("."), help="directory (default .)")
    p.add_argument("-o", "--output", help="file name (one URL only)")
    p.add_argument("--attempts", type=int, default=3, help="tries per file (default 3)")
    p.add_argument("--retry-wait", type=float, default=2.0,
                   help="seconds before the first retry, growing linearly (default 2)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the server at each step (default 30)")
    p.add_argument("--job", default="download", help="jobreport job name (default download)")
    p.add_argument("--expect-every", help="expected interval, e.g. 1h (for overdue alerts)")
    p.add_argument("--max-runtime", help="a run is stuck after this long, e.g. 30m")
    return p


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # report the run and keep the partial file for resuming


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.output and len(args.urls) > 1:
        parser().error("-o/--output works with one URL only")
    if args.attempts < 1:
        parser().error("--attempts must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    total = transferred = 0
    try:
        with job_metrics(args.job, expect_every=args.expect_every,
                         max_runtime=args.max_runtime) as job, requests.Session() as session:
            if not args.dest.is_dir():
                raise DownloadError(f"directory {args.dest} does not exist: create it first")
            targets = [parse_target(u, args.dest, args.output) for u in args.urls]
            session.headers["User-Agent"] = "jobreport-download-example"
            for target in targets:
                got = fetch(target, session, attempts=args.attempts, wait=args.retry_wait,
                            timeout=args.timeout)
                total += got.size
                transferred += got.transferred
                job.add_items(1)
                job.set_size(total)
                job.gauge("download_transferred_bytes", transferred,
                          help="Bytes received over the network in the last run")
                print(f"{target.path} ({got.size} bytes, {got.transferred} transferred)")
    except (DownloadError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
