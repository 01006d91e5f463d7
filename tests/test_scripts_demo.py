"""scripts/demo.sh, the README's first command: it runs to the end with no input, shows
the runs it made, and stops and removes everything it started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import pytest

from tests import servers
from tests.isolation import SentinelUser

pytestmark = pytest.mark.integration  # starts servers itself

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    """The demo's jobs appear in `jobreport status` and `jobreport history`, the failed job
    raises the JobreportJobFailed alert in Prometheus, and afterwards no process of the demo
    runs, its temporary directory is gone, and the user's jobreport state and config
    (~/.local/state/jobreport, ~/.config/jobreport) and runtime directory are unchanged:
    no lock file, no run, no peer memory left there."""
    user = SentinelUser(tmp_path / "user")
    user.fill(gateway=f"http://127.0.0.1:{servers.free_port()}",
              dead_gateway=f"http://127.0.0.1:{servers.free_port()}")
    before = user.watched()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=user.env,
                          cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    status = out.split("==> jobreport status")[1].split("==>")[0]
    rows = {line.split()[0]: line for line in status.splitlines()[2:] if line.strip()}
    assert set(rows) == {"backup", "archive", "analysis", "flaky"}
    assert " success " in rows["backup"] and " failure " in rows["flaky"]
    history = out.split("==> jobreport history")[1].split("==>")[0]
    backup_row = next(line for line in history.splitlines() if " backup " in line)
    assert "1200" in backup_row  # rows copied: 200 customers + 1000 orders
    assert "nightly" not in history  # the user's own store was not used
    assert "exit code: 3" in out
    assert "FIRING JobreportJobFailed job=flaky" in out
    assert "Traceback" not in proc.stderr
    assert user.changes_since(before) == []
    assert list(user.tmp.iterdir()) == []
    leftovers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if any(str(user.tmp) in arg for arg in p.info["cmdline"] or ())]
    assert leftovers == []
