"""The wheel carries the monitoring side: built from the checkout, installed into a fresh
venv, its `jobreport monitoring export` works from a folder that is not the repository and
writes the repository's files (the package data follows the symlinks to monitoring/ and
docs/runbook.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.monitoring_helpers import AMTOOL, MONITORING, PROMTOOL, ROOT

pytestmark = pytest.mark.integration  # builds a wheel and installs it


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], check=False, capture_output=True,
                            text=True, timeout=300, cwd=cwd, env=env)
    return result


def test_wheel_ships_the_monitoring_side(tmp_path: Path) -> None:
    """Build the wheel, install it without network or dependencies into a venv that
    borrows this venv's dependencies, and export from outside the repository."""
    # a copy of the checkout (symlinks kept as links), so that the build leaves nothing in it
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".hypothesis", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    assert (source / "jobreport" / "monitoring" / "data").is_symlink()
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source,
                cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("jobreport-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = {n.removeprefix("jobreport/monitoring/data/") for n in names
                   if n.startswith("jobreport/monitoring/data/")}
        assert z.read("jobreport/monitoring/runbook.md") == (
            ROOT / "docs" / "runbook.md").read_bytes()
    in_repo = {p.relative_to(MONITORING).as_posix() for p in MONITORING.rglob("*")
               if p.is_file()}
    assert shipped == in_repo, "the wheel must hold monitoring/ exactly"

    # the sdist holds the files themselves (no links), so a wheel built from it has them too
    sdist = run(sys.executable, "-c", "import sys; from setuptools import build_meta; "
                "build_meta.build_sdist(sys.argv[1])", dist, cwd=source)
    assert sdist.returncode == 0, sdist.stdout + sdist.stderr
    [tarball] = dist.glob("jobreport-*.tar.gz")
    with tarfile.open(tarball) as tar:
        members = {m.name.partition("/")[2]: m for m in tar.getmembers()}
        for name in in_repo:
            member = members[f"jobreport/monitoring/data/{name}"]
            assert member.isfile(), f"{name} is not a regular file in the sdist"
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == (MONITORING / name).read_bytes(), name
        assert members["jobreport/monitoring/runbook.md"].isfile()

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                       cwd=tmp_path).stdout.strip())
    # the dependencies (click, ...) come from this venv; its own jobreport (an editable
    # install, found through a .pth file of its own) is not on that path
    (purelib / "_jobreport_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index",
                    "--no-deps", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run(python, "-c", "import jobreport; print(jobreport.__file__)", cwd=elsewhere,
                env=env)
    assert Path(where.stdout.strip()).is_relative_to(purelib), where.stdout + where.stderr
    out = elsewhere / "monitoring"
    exported = run(venv / "bin" / "jobreport", "monitoring", "export", out, "--runbook-url",
                   "https://wiki.example.org/runbook", cwd=elsewhere, env=env)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert (out / "grafana" / "dashboards" / "jobreport.json").read_text() == (
        MONITORING / "grafana" / "dashboards" / "jobreport.json").read_text()
    checked = run(PROMTOOL, "check", "config", out / "prometheus.yml", cwd=elsewhere)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = run(AMTOOL, "check-config", out / "alertmanager-route.yml", cwd=elsewhere)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    runbook = run(venv / "bin" / "jobreport", "monitoring", "runbook", cwd=elsewhere, env=env)
    assert runbook.returncode == 0, runbook.stderr
    page = Path(runbook.stdout.strip())
    assert page.is_relative_to(purelib) and page.read_text() == (
        ROOT / "docs" / "runbook.md").read_text()
