#!/usr/bin/env python3
"""Download several files at once with asyncio, each reported as its own jobreport run.

    download_async.py --dest /srv/data https://example.org/a.csv 'https://example.org/b.gz#sha256=9f86d0...'

Every file is one run of the job (``--job``, default ``download-async``) in its own group,
labelled ``file=<name>``: a file that stops arriving alerts on its own, and one failing file
does not hide the others. The files are fetched concurrently (``--concurrency``), each by
``download.py``'s ``fetch`` (requests: redirects, chunked bodies, retries, resuming, the
SHA-256 check when the URL ends in ``#sha256=<hex>``, fsync and rename into place) in a
thread of its own, so that the event loop never waits on the network or the disk. The size
of each file is ``jobreport_last_size_bytes`` of its group; the error of a failed file
(``jobreport history --run ID``) says what went wrong.

Exit status: 0 when every file arrived, 1 otherwise (one line per failed file on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from download import DownloadError, Target, fetch, parse_target, requests

from jobreport import job_metrics

PROG = "download_async"


async def download_all(targets: Sequence[Target], args: argparse.Namespace) -> int:
    limit = asyncio.Semaphore(args.concurrency)

    def fetch_one(target: Target) -> int:
        # a session per file: a requests.Session is not meant to be shared by threads
        with requests.Session() as session:
            session.headers["User-Agent"] = "jobreport-download-async-example"
            return fetch(target, session, attempts=args.attempts, wait=args.retry_wait,
                         timeout=args.timeout).size

    async def one(target: Target) -> None:
        async with limit, job_metrics(args.job, labels={"file": target.path.name},
                                      expect_every=args.expect_every) as job:
            size = await asyncio.to_thread(fetch_one, target)
            job.set_size(size)
            print(f"{target.path} ({size} bytes)")

    results = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
    failed = 0
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, (DownloadError, OSError)):
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
    p.add_argument("--attempts", type=int, default=3, help="tries per file (default 3)")
    p.add_argument("--retry-wait", type=float, default=2.0,
                   help="seconds before the first retry, growing linearly (default 2)")
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
    if args.attempts < 1:
        parser().error("--attempts must be at least 1")
    if not args.dest.is_dir():
        print(f"{PROG}: error: directory {args.dest} does not exist: create it first",
              file=sys.stderr)
        return 1
    try:
        targets = [parse_target(u, args.dest, None) for u in args.urls]
    except DownloadError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return asyncio.run(download_all(targets, args))


if __name__ == "__main__":
    sys.exit(main())
