"""The decorator keeps the signature of what it decorates, under mypy --strict: a plain
function, a coroutine function, generators and async generators, methods. mypy checks
tests/typing/decorated.py twice: with ``@job_metrics(...)`` it must pass, and with a
decorator typed ``Callable[..., Any]`` (a signature lost) it must fail -- the check has
teeth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # mypy runs as a child for seconds

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / "tests" / "typing" / "decorated.py").read_text(encoding="utf-8")
LOSSY = '''
from collections.abc import Callable


def lossy(func: Callable[..., Any]) -> Callable[..., Any]:
    return func
'''


def mypy(tmp_path: Path, decorator: str, extra: str = "") -> subprocess.CompletedProcess[str]:
    head, marker, rest = SOURCE.partition("\n\n@DECORATOR")
    source = head + extra + marker + rest
    source = source.replace("@DECORATOR", f"@{decorator}")
    path = tmp_path / "decorated_check.py"
    path.write_text(source, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10",
         "--cache-dir", str(tmp_path / "cache"), "--follow-imports", "silent", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_job_metrics_keeps_every_signature(tmp_path: Path) -> None:
    """Every assert_type holds and every wrong call is an error with job_metrics."""
    proc = mypy(tmp_path, 'job_metrics("typed")')
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_lost_signature_fails_the_check(tmp_path: Path) -> None:
    """The same file with a decorator that loses the signature fails: each assert_type
    and each now unused type: ignore is an error."""
    proc = mypy(tmp_path, "lossy", LOSSY)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("[assert-type]") == 8, proc.stdout
    assert proc.stdout.count('Unused "type: ignore" comment') == 6, proc.stdout
