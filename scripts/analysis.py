#!/usr/bin/env python3
"""Sequence statistics over a FASTA file, reported to the Pushgateway through jobreport.

    analysis.py scripts/data/sample.fasta --out /srv/reports/sample.tsv
    analysis.py --generate 200 --seed 7 > synthetic.fasta     # make test input

For each record: length, GC content and the count of ambiguous bases (anything but A, C,
G, T); for the file: sequences, total bases, GC content, N50. The per-record table is
written atomically (temporary file, fsync, rename) as tab-separated values.

Reported through ``job_metrics("analysis")``: records as jobreport_last_items, the report's
size as jobreport_last_size_bytes, and the gauges ``fasta_total_bases``, ``fasta_gc_ratio``,
``fasta_n50_bases`` and ``fasta_ambiguous_bases``. A file with no records, or a record with
characters that are not IUPAC nucleotide codes, fails the run. Under
``jobreport run --job analysis`` the figures join the wrapper's run (one run, not two).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jobreport import job_metrics

PROG = "analysis"
DEFAULT_INPUT = Path(__file__).resolve().parent / "data" / "sample.fasta"
IUPAC = set("ACGTURYSWKMBDHVN")


class AnalysisError(Exception):
    """The input cannot be analysed; the message says where and why."""


@dataclass
class Record:
    name: str
    length: int
    gc: int  # G and C bases
    ambiguous: int  # bases other than A, C, G, T


def read_fasta(lines: Iterator[str], source: str) -> Iterator[Record]:
    name: str | None = None
    counts = dict.fromkeys("ACGT", 0)
    length = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if name is not None:
                yield _record(name, length, counts)
            name = line[1:].split()[0] if len(line) > 1 else f"record{lineno}"
            counts = dict.fromkeys("ACGT", 0)
            length = 0
            continue
        if name is None:
            raise AnalysisError(f"{source}:{lineno}: sequence data before the first '>' header")
        seq = line.upper()
        bad = set(seq) - IUPAC
        if bad:
            raise AnalysisError(
                f"{source}:{lineno}: not a nucleotide code: {''.join(sorted(bad))!r}"
            )
        for base in "ACGT":
            counts[base] += seq.count(base)
        length += len(seq)
    if name is not None:
        yield _record(name, length, counts)


def _record(name: str, length: int, counts: dict[str, int]) -> Record:
    acgt = sum(counts.values())
    return Record(name, length, counts["G"] + counts["C"], length - acgt)


def gc_ratio(r: Record) -> float:
    """G+C share of the record's unambiguous bases."""
    return r.gc / max(1, r.length - r.ambiguous)


def n50(lengths: Sequence[int]) -> int:
    """The length L such that records of length >= L hold at least half of all bases."""
    half = sum(lengths) / 2
    running = 0
    for length in sorted(lengths, reverse=True):
        running += length
        if running >= half:
            return length
    return 0


def write_atomically(path: Path, text: str) -> int:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return path.stat().st_size


def generate(out: TextIO, records: int, seed: int) -> None:
    """Write ``read_rows`` random sequences (100-600 bases, varying GC content)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    for i in range(1, records + 1):
        gc = rng.uniform(0.3, 0.7)
        weights = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        seq = "".join(rng.choices("ACGT", weights, k=rng.randint(100, 600)))
        if rng.random() < 0.2:
            at = rng.randrange(len(seq))
            seq = seq[:at] + "N" * rng.randint(1, 5) + seq[at:]
        out.write(f">seq{i:04d} synthetic gc={gc:.2f}\n")
        for start in range(0, len(seq), 60):
            out.write(seq[start:start + 60] + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="FASTA statistics, reported as a job.")
    p.add_argument("fasta", nargs="?", type=Path, default=DEFAULT_INPUT,
                   help="input FASTA file (default: the sample shipped in scripts/data)")
    p.add_argument("--out", type=Path, help="per-record report (TSV; default ./NAME.stats.tsv)")
    p.add_argument("--job", default="analysis", help="jobreport job name (default analysis)")
    p.add_argument("--expect-every", help="expected interval, e.g. 24h (for overdue alerts)")
    p.add_argument("--generate", type=int, metavar="N",
                   help="write N random records to stdout instead, and exit")
    p.add_argument("--seed", type=int, default=1, help="random seed for --generate")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.generate is not None:
        generate(sys.stdout, args.generate, args.seed)
        return 0
    out = args.out or Path(args.fasta.stem + ".stats.tsv")
    try:
        with job_metrics(args.job, expect_every=args.expect_every) as job:
            with open(args.fasta) as f:
                records = list(read_fasta(f, str(args.fasta)))
            if not records:
                raise AnalysisError(f"{args.fasta}: no FASTA records found")
            lengths = [r.length for r in records]
            total = sum(lengths)
            gc = sum(r.gc for r in records)
            acgt = total - sum(r.ambiguous for r in records)
            rows = ["name\tlength\tgc_ratio\tambiguous"] + [
                f"{r.name}\t{r.length}\t{gc_ratio(r):.4f}\t{r.ambiguous}" for r in records
            ]
            job.set_size(write_atomically(out, "\n".join(rows) + "\n"))
            job.add_items(len(records))
            job.gauge("fasta_total_bases", total, help="Bases in the input")
            job.gauge("fasta_gc_ratio", gc / acgt if acgt else 0.0,
                      help="G+C share of the unambiguous bases")
            job.gauge("fasta_n50_bases", n50(lengths), help="N50 of the record lengths")
            job.gauge("fasta_ambiguous_bases", total - acgt, help="Bases other than ACGT")
    except (AnalysisError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(f"{out}: {len(records)} records, {total} bases, GC {gc / acgt:.3f}, "
          f"N50 {n50(lengths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
