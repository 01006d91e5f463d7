"""scripts/analysis.py, scripts/train.py and scripts/shell_job.sh, end to end against a
real Pushgateway: what they produce, and what they report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
BIN = Path(sys.executable).parent


def run(argv: list[str], gateway: Gateway, cwd: Path,
        **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "JOBREPORT_GATEWAY": gateway.url, "PYTHONPATH": str(ROOT),
                "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    return subprocess.run(argv, env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def load(name: str):  # type: ignore[no-untyped-def]
    """Import a script as a module (to recompute its results independently)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(SCRIPTS))


def test_analysis_of_the_shipped_sample(tmp_path: Path, gateway: Gateway) -> None:
    """The per-record table covers every record of the sample, and the totals pushed agree
    with a count made here from the raw file."""
    proc = run([sys.executable, str(SCRIPTS / "analysis.py"), "--expect-every", "24h"],
               gateway, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "sample.stats.tsv"
    rows = report.read_text().splitlines()
    assert rows[0] == "name\tlength\tgc_ratio\tambiguous"
    text = (SCRIPTS / "data" / "sample.fasta").read_text()
    records = text.split(">")[1:]
    seqs = ["".join(r.splitlines()[1:]) for r in records]
    assert len(rows) - 1 == len(records) == 40
    assert [r.split("\t")[1] for r in rows[1:]] == [str(len(s)) for s in seqs]
    bases = "".join(seqs)
    acgt = sum(bases.count(b) for b in "ACGT")
    s = gateway.samples("analysis")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_items"] == 40
    assert s["jobreport_last_size_bytes"] == report.stat().st_size
    assert s["fasta_total_bases"] == len(bases)
    assert s["fasta_ambiguous_bases"] == len(bases) - acgt > 0
    assert abs(s["fasta_gc_ratio"] - (bases.count("G") + bases.count("C")) / acgt) < 1e-9
    lengths = sorted(map(len, seqs), reverse=True)
    running, n50 = 0, 0
    for length in lengths:
        running += length
        if running * 2 >= len(bases):
            n50 = length
            break
    assert s["fasta_n50_bases"] == n50


def test_analysis_rejects_bad_input(tmp_path: Path, gateway: Gateway) -> None:
    """A protein sequence where nucleotides are expected fails the run with the line."""
    bad = tmp_path / "bad.fasta"
    bad.write_text(">ok\nACGT\n>protein\nMKWVTFISLL\n")
    proc = run([sys.executable, str(SCRIPTS / "analysis.py"), str(bad)], gateway, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"analysis: error: {bad}:4: not a nucleotide code: 'FIL'"
    )
    assert not (tmp_path / "bad.stats.tsv").exists()
    assert gateway.samples("analysis")['jobreport_last_outcome{outcome="failure"}'] == 1


def test_analysis_generates_input(tmp_path: Path, gateway: Gateway) -> None:
    """--generate writes a FASTA file the analysis then reads back record for record."""
    proc = run([sys.executable, str(SCRIPTS / "analysis.py"), "--generate", "25", "--seed",
                "3"], gateway, tmp_path)
    assert proc.returncode == 0
    (tmp_path / "gen.fasta").write_text(proc.stdout)
    proc = run([sys.executable, str(SCRIPTS / "analysis.py"), "gen.fasta", "--out",
                "gen.tsv"], gateway, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len((tmp_path / "gen.tsv").read_text().splitlines()) == 26
    assert gateway.samples("analysis")["jobreport_last_items"] == 25


def test_train_reports_held_out_accuracy_and_loss(tmp_path: Path, gateway: Gateway) -> None:
    """The saved model, evaluated here on the same held-out data, gives exactly the
    accuracy and loss that were pushed; better than chance (1/3) by a wide margin."""
    model_path = tmp_path / "model.json"
    proc = run([sys.executable, str(SCRIPTS / "train.py"), "--model", str(model_path),
                "--epochs", "8", "--examples", "600", "--expect-every", "7d"],
               gateway, tmp_path)
    assert proc.returncode == 0, proc.stderr
    train = load("train")
    saved = json.loads(model_path.read_text())
    data = train.make_data(600, 42)
    accuracy, loss = train.Model.from_json(saved).evaluate(data[480:])
    s = gateway.samples("train")
    assert s["jobreport_last_run_success"] == 1
    assert s["train_accuracy"] == accuracy == saved["accuracy"]
    assert s["train_loss"] == loss
    assert accuracy > 0.7
    assert 0 < loss < 1.0986  # below the loss of always guessing 1/3
    assert s["train_epochs"] == 8
    assert s["jobreport_last_items"] == 480 * 8
    assert s["jobreport_last_size_bytes"] == model_path.stat().st_size
    assert s["jobreport_expected_interval_seconds"] == pytest.approx(7 * 86400 * 1.1)


def test_train_below_min_accuracy_is_a_failed_run(tmp_path: Path, gateway: Gateway) -> None:
    """A model worse than --min-accuracy is saved but the run fails with exit code 3."""
    proc = run([sys.executable, str(SCRIPTS / "train.py"), "--model", "m.json", "--epochs",
                "1", "--examples", "60", "--min-accuracy", "0.99"], gateway, tmp_path)
    assert proc.returncode == 3
    assert "is below --min-accuracy 0.99" in proc.stderr
    s = gateway.samples("train")
    assert s["jobreport_last_run_success"] == 0
    assert s["jobreport_last_exit_code"] == 3
    assert "train_accuracy" in s


def test_shell_job_through_jobreport_run(tmp_path: Path, gateway: Gateway) -> None:
    """shell_job.sh under `jobreport run`: the archive holds the files, and the lines it
    appended to $JOBREPORT_METRICS_FILE arrive as gauges next to the run's own metrics."""
    src = tmp_path / "site"
    (src / "css").mkdir(parents=True)
    for i in range(7):
        (src / f"page{i}.html").write_text(f"<p>page {i}</p>\n" * 50)
    (src / "css" / "main.css").write_text("body{}\n")
    dest = tmp_path / "archives"
    dest.mkdir()
    proc = run([str(BIN / "jobreport"), "run", "--job", "archive", "--expect-every", "6h",
                "--", "sh", str(SCRIPTS / "shell_job.sh"), str(src), str(dest)],
               gateway, tmp_path)
    assert proc.returncode == 0, proc.stderr
    [archive] = dest.iterdir()
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert tar.extractfile("./page3.html").read() == b"<p>page 3</p>\n" * 50  # type: ignore[union-attr]
    assert len(names) == 8
    s = gateway.samples("archive")
    assert s["jobreport_last_run_success"] == 1
    assert s["archive_files"] == 8
    assert s["archive_bytes"] == archive.stat().st_size
    assert s["jobreport_expected_interval_seconds"] == pytest.approx(6 * 3600 * 1.1)


def test_shell_job_failure_is_reported_and_cleaned(tmp_path: Path, gateway: Gateway) -> None:
    """A missing source directory: the job's exit code 2 passes through jobreport run, the
    run is a failure, and no archive or temporary file is left."""
    dest = tmp_path / "archives"
    dest.mkdir()
    proc = run([str(BIN / "jobreport"), "run", "--job", "archive", "--", "sh",
                str(SCRIPTS / "shell_job.sh"), str(tmp_path / "nope"), str(dest)],
               gateway, tmp_path)
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr
    assert list(dest.iterdir()) == []
    s = gateway.samples("archive")
    assert s["jobreport_last_exit_code"] == 2
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1


def test_shell_job_runs_without_jobreport(tmp_path: Path) -> None:
    """Run directly (no $JOBREPORT_METRICS_FILE), the job still does its work."""
    src = tmp_path / "d"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    dest = tmp_path / "out"
    dest.mkdir()
    proc = subprocess.run(["sh", str(SCRIPTS / "shell_job.sh"), str(src), str(dest)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    [archive] = dest.iterdir()
    assert "1 files" in proc.stdout
    with tarfile.open(archive) as tar:
        assert tar.extractfile("./a.txt").read() == b"a\n"  # type: ignore[union-attr]
