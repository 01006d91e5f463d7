"""A regular (non-editable) install of this checkout in a temporary venv, for start-up figures.

An editable install adds its import finder to every start (about 15 ms here), which a user's
``pip install jobreport`` does not have. The venv gets jobreport built from this checkout by
pip (a wheel, as ``pip install .`` makes it) and no dependencies of its own: a ``.pth`` line
appends the development venv's site-packages, so click, prometheus_client and the rest come
from there, after the installed jobreport.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _common import PYTHON, ROOT

__all__ = ["install"]


def install(where: Path, source: Path = ROOT) -> tuple[str, str]:
    """(python, jobreport) of a fresh venv in ``where`` with this checkout (or the one at
    ``source``) installed."""
    venv = where / "venv"
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                           "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pip install of {source} failed:\n{proc.stderr[-2000:]}")
    dev = subprocess.run([PYTHON, "-c", "import click, os; print(os.path.dirname("
                          "os.path.dirname(click.__file__)))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_jobreport_bench_deps.pth").write_text(dev + "\n")
    where_from = subprocess.run([str(python), "-c", "import jobreport; print(jobreport.__file__)"],
                                capture_output=True, text=True, check=True,
                                cwd=where).stdout.strip()
    if not where_from.startswith(str(venv)):
        raise SystemExit(f"jobreport imports from {where_from}, not from the installed copy")
    return str(python), str(venv / "bin" / "jobreport")


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(install(Path(tmp)), file=sys.stderr)
