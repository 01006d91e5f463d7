"""Helpers the benchmark scripts share: timing statistics, the machine, real servers.

Every script measures its figure against a baseline in the same run, prints both with the
median and spread over repeated runs, and (with ``--json FILE``) appends its results as
JSON lines for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
JOBREPORT = str(VENV_BIN / "jobreport")


def cli_ready(command: str = "run") -> bool:
    """Whether the installed ``jobreport`` CLI has ``command`` (the CLI lands separately)."""
    import subprocess

    if not os.path.exists(JOBREPORT):
        return False
    proc = subprocess.run([JOBREPORT, command, "--help"], capture_output=True, timeout=60,
                          check=False)
    return proc.returncode == 0


@dataclass
class Stats:
    """Summary of repeated measurements (seconds unless ``unit`` says otherwise)."""

    name: str
    values: list[float]
    unit: str = "ms"

    @property
    def scale(self) -> float:
        return {"ms": 1000.0, "s": 1.0, "MiB": 1.0 / (1024 * 1024)}[self.unit]

    @property
    def median(self) -> float:
        return statistics.median(self.values) * self.scale

    @property
    def p25(self) -> float:
        return _quantile(self.values, 0.25) * self.scale

    @property
    def p75(self) -> float:
        return _quantile(self.values, 0.75) * self.scale

    @property
    def min(self) -> float:
        return min(self.values) * self.scale

    @property
    def max(self) -> float:
        return max(self.values) * self.scale

    def line(self) -> str:
        return (f"{self.name:<44} median {self.median:9.2f} {self.unit}  "
                f"IQR {self.p25:.2f}-{self.p75:.2f}  min {self.min:.2f}  max {self.max:.2f}  "
                f"(n={len(self.values)})")

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "unit": self.unit, "n": len(self.values),
                "median": round(self.median, 3), "p25": round(self.p25, 3),
                "p75": round(self.p75, 3), "min": round(self.min, 3), "max": round(self.max, 3)}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(name: str, func: Callable[[], object], repeat: int, *, warmup: int = 2,
            unit: str = "ms") -> Stats:
    """Time ``func`` ``repeat`` times (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        func()
    values = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        values.append(time.perf_counter() - t0)
    return Stats(name, values, unit)


def interleave(funcs: dict[str, Callable[[], object]], repeat: int, *, warmup: int = 2,
               unit: str = "ms") -> dict[str, Stats]:
    """Time several functions in turn (A B A B ...), so that both see the same machine load
    (the machine is shared with other work)."""
    for _ in range(warmup):
        for f in funcs.values():
            f()
    values: dict[str, list[float]] = {k: [] for k in funcs}
    for _ in range(repeat):
        for name, f in funcs.items():
            t0 = time.perf_counter()
            f()
            values[name].append(time.perf_counter() - t0)
    return {k: Stats(k, v, unit) for k, v in values.items()}


def machine() -> dict[str, str]:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model,
            "python": platform.python_version(), "kernel": platform.release(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def _private_state() -> str:
    """A directory of this benchmark's own, removed at exit, for what jobreport keeps
    outside its store (run markers, lock files; the default store): set as this process's
    ``XDG_STATE_HOME`` and ``XDG_RUNTIME_DIR`` at import, so that neither a measured run
    nor anything started from here writes into the user's ``~/.local/state/jobreport``."""
    import atexit
    import shutil
    import tempfile

    own = tempfile.mkdtemp(prefix="jobreport-bench-")
    atexit.register(shutil.rmtree, own, True)
    for name in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        os.makedirs(os.path.join(own, name.lower()), mode=0o700)
    for name in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        os.environ[name] = os.path.join(own, name.lower())
    return own


#: This benchmark's own directory (``_private_state``).
PRIVATE = _private_state()


def clean_env() -> dict[str, str]:
    """This process's environment without any jobreport setting (``JOBREPORT_*``,
    ``PUSHGATEWAY_URL``): each benchmark sets the ones it measures. Its state and config
    directories are the benchmark's own (``PRIVATE``): the user's ``jobreport.toml`` does
    not change what is measured. (This process keeps the user's ``XDG_CONFIG_HOME``: pip,
    which the start-up figures run, reads its settings there.)"""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JOBREPORT_") and k != "PUSHGATEWAY_URL"}
    env["XDG_CONFIG_HOME"] = os.path.join(PRIVATE, "xdg_config_home")
    return env


def header(title: str) -> None:
    m = machine()
    print(f"== {title}")
    print(f"   machine: nproc={m['nproc']} cpu={m['cpu']!r} python={m['python']} "
          f"kernel={m['kernel']} loadavg={m['load']}")


def verdict(label: str, ok: bool, detail: str) -> str:
    text = f"   {'PASS' if ok else 'FAIL'}  {label}: {detail}"
    print(text)
    return text


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--repeat", type=int, default=None, help="measurements per figure")
    p.add_argument("--json", type=Path, default=None,
                   help="append the results as JSON lines to this file")
    return p


def write_json(path: Path | None, script: str, results: dict[str, object]) -> None:
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"script": script, "machine": machine(), **results}) + "\n")


@contextmanager
def pushgateway(workdir: Path) -> Iterator[str]:
    """A real Pushgateway on a free loopback port (tests/servers.py), no persistence."""
    from tests import servers

    server = servers.pushgateway(workdir).start()
    try:
        yield server.url
    finally:
        server.stop()


