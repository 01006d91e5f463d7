#!/usr/bin/env python3
"""Download several files at once with asyncio, each reported as its own jobreport run.

    download_async.py --dest /srv/data https://example.org/a.csv 'https://example.org/b.gz#sha256=9f86d0...'

Every file is one run of the job (``--job``, default ``download-async``) in its own group,
labelled ``file=<name>``: a file that stops arriving alerts on its own, and one failing file
does not hide the others. The files are fetched concurrently (``--concurrency``) over plain
asyncio streams (HTTP/1.1, https with the system's CA bundle, redirects, chunked bodies):
the standard library only. Each is streamed to ``.<name>.part``, checked (length, and
SHA-256 when the URL ends in ``#sha256=<hex>``), fsynced off the event loop and renamed into
place. The size of each file is ``jobreport_last_size_bytes`` of its group; the error of a
failed file (``jobreport history --run ID``) says what went wrong.

Exit status: 0 when every file arrived, 1 otherwise (one line per failed file on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from jobreport import current_job, job_metrics

PROG = "download_async"
CHUNK = 1 << 16
MAX_REDIRECTS = 5


class DownloadError(Exception):
    """A file could not be fetched; the message says why."""


@dataclass
class Target:
    url: str  # without the #sha256= fragment
    sha256: str | None
    path: Path


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def parse_target(spec: str, dest: Path) -> Target:
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"{spec}: only http:// and https:// URLs are supported")
    sha = None
    if parts.fragment:
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", parts.fragment)
        if not m:
            raise DownloadError(f"{spec}: the fragment must be #sha256=<64 hex digits>")
        sha = m.group(1).lower()
    name = unquote(parts.path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name:
        raise DownloadError(f"{spec}: cannot tell a file name from the URL")
    return Target(urlunsplit(parts._replace(fragment="")), sha, dest / name)


async def request(url: str, timeout: float) -> Response:
    """GET ``url``, following redirects; the response with its body still to read."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        https = parts.scheme == "https"
        host = parts.hostname or ""
        context = ssl.create_default_context() if https else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, parts.port or (443 if https else 80), ssl=context),
            timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "User-Agent: jobreport-download-async-example\r\n"
                     "Accept-Encoding: identity\r\nConnection: close\r\n\r\n".encode("ascii"))
        await writer.drain()
        status_line = (await asyncio.wait_for(reader.readline(), timeout)).decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)", status_line)
        if not m:
            writer.close()
            raise DownloadError(f"{url}: not an HTTP answer: {status_line.strip()[:80]!r}")
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), timeout)) not in (
                b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        response = Response(int(m.group(1)), m.group(2).strip(), headers, reader, writer)
        if response.status in (301, 302, 303, 307, 308) and "location" in headers:
            writer.close()
            url = urljoin(url, headers["location"])
            continue
        return response
    raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def body(response: Response, timeout: float) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive (chunked, sized, or up to the end)."""
    reader = response.reader
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await asyncio.wait_for(reader.readline(), timeout)).split(b";")[0],
                          16):
            yield await asyncio.wait_for(reader.readexactly(size), timeout)
            await reader.readline()
        return
    left = int(response.headers.get("content-length", "-1"))
    while left != 0:
        piece = await asyncio.wait_for(reader.read(CHUNK if left < 0 else min(CHUNK, left)),
                                       timeout)
        if not piece:
            if left > 0:
                raise DownloadError(f"the connection closed {left} bytes before the end")
            return
        yield piece
        left -= len(piece) if left > 0 else 0


async def fetch(target: Target, timeout: float) -> int:
    """Fetch one file into place; its size in bytes."""
    response = await request(target.url, timeout)
    try:
        if response.status != 200:
            raise DownloadError(f"{target.url}: HTTP {response.status} {response.reason}")
        part = target.path.with_name(f".{target.path.name}.part")
        digest = hashlib.sha256()
        size = 0
        with open(part, "wb") as f:
            async for piece in body(response, timeout):
                f.write(piece)
                digest.update(piece)
                size += len(piece)
                current_job().set_size(size)  # the run's handle, in the task that runs it
            f.flush()
            await asyncio.to_thread(os.fsync, f.fileno())  # fsync may take long: off the loop
        if target.sha256 and digest.hexdigest() != target.sha256:
            part.unlink()
            raise DownloadError(f"{target.url}: checksum mismatch: got {digest.hexdigest()}, "
                                f"expected {target.sha256}")
        os.replace(part, target.path)
        return size
    finally:
        response.writer.close()


async def download_all(targets: Sequence[Target], args: argparse.Namespace) -> int:
    limit = asyncio.Semaphore(args.concurrency)

    async def one(target: Target) -> None:
        async with limit, job_metrics(args.job, labels={"file": target.path.name},
                                      expect_every=args.expect_every):
            size = await fetch(target, args.timeout)
            print(f"{target.path} ({size} bytes)")

    results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
    failed = 0
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, (DownloadError, OSError, TimeoutError,
                                       asyncio.IncompleteReadError, ValueError)):
                raise result
            failed += 1
            print(f"{PROG}: error: {target.path.name}: {result or type(result).__name__}",
                  file=sys.stderr)
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__
                                else None)
    p.add_argument("urls", nargs="+", metavar="URL",
                   help="http(s) URL, optionally ending in #sha256=<hex>")
    p.add_argument("--dest", type=Path, default=Path("."), help="directory (default .)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="files fetched at once (default 4)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the server at each step (default 30)")
    p.add_argument("--job", default="download-async",
                   help="jobreport job name (default download-async)")
    p.add_argument("--expect-every", help="expected interval, e.g. 1h (for overdue alerts)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.concurrency < 1:
        parser().error("--concurrency must be at least 1")
    if not args.dest.is_dir():
        print(f"{PROG}: error: directory {args.dest} does not exist: create it first",
              file=sys.stderr)
        return 1
    try:
        targets = [parse_target(u, args.dest) for u in args.urls]
    except DownloadError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return asyncio.run(download_all(targets, args))


if __name__ == "__main__":
    sys.exit(main())
