"""The output relay of ``jobreport run`` (its output not a terminal, so the command's output
goes through the copier process and its tee to the wrapper's tail), as whole processes.

1. Throughput: a command writing 100 MiB to jobreport's stdout (a file), relayed, versus
   ``--tail 0`` (no relay: the command writes to the file itself) and the command alone.
2. ``jobreport run -- true``, relayed versus ``--tail 0``: what the relay adds to a run.
3. The copier's own memory while a run is in progress (``/proc/PID/smaps_rollup``): it is
   a fork of the wrapper, so most of its pages are shared with it.

No target: figures for the record. Measurements alternate (A B C A B C ...).

    .venv/bin/python benchmarks/bench_relay.py [--repeat 10]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Stats, clean_env, header, interleave, parser, write_json

ROOT = Path(__file__).resolve().parent.parent


def runner(argv: list[str], env: dict[str, str], out: Path) -> Callable[[], None]:
    def run() -> None:
        with open(out, "wb") as f:
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=f,
                           stderr=subprocess.DEVNULL, check=True)
    return run


def copier_memory(jobreport: list[str], env: dict[str, str], out: Path) -> dict[str, float]:
    """Rss and Private_Dirty (KiB) of the copier of a run that sleeps a moment."""
    with open(out, "wb") as f:
        proc = subprocess.Popen([*jobreport, "run", "--job", "m", "--", "sleep", "2"],
                                env=env, stdout=f, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for pid in _children(proc.pid):
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "jobreport-relay":
                        time.sleep(1)  # once the wrapper has loaded what the end of a run needs
                        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                        fields = dict(line.split(":", 1) for line in rollup if ":" in line)
                        return {k: float(fields[k].split()[0]) for k in ("Rss", "Private_Dirty")}
                except OSError:
                    continue
            time.sleep(0.01)
        raise SystemExit("no copier process found")
    finally:
        proc.wait(60)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.update(int(p) for p in
                         Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except OSError:
            continue
    return found


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 10
    header("jobreport run: the output relay (editable install)")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env()
        env.update({"JOBREPORT_DB": f"sqlite:///{tmp}/store.db", "PYTHONPATH": str(ROOT),
                    "XDG_CONFIG_HOME": f"{tmp}/config", "XDG_STATE_HOME": f"{tmp}/state"})
        blob = Path(tmp) / "blob"
        blob.write_bytes(os.urandom(100 * 1024 * 1024))
        out = Path(tmp) / "out"
        jobreport = [sys.executable, "-m", "jobreport"]
        cat = ["cat", str(blob)]
        stats = interleave({
            "cat 100 MiB alone": runner(cat, env, out),
            "jobreport run --tail 0 -- cat": runner(
                [*jobreport, "run", "--tail", "0", "--job", "c", "--", *cat], env, out),
            "jobreport run -- cat (relayed)": runner(
                [*jobreport, "run", "--job", "c", "--", *cat], env, out),
        }, repeat, warmup=1)
        for s in stats.values():
            print("   " + s.line())
        relayed = stats["jobreport run -- cat (relayed)"].median
        plain = stats["jobreport run --tail 0 -- cat"].median
        cost = relayed - plain
        print(f"   relay's cost for 100 MiB: {cost:.1f} ms "
              f"(about {100 / (cost / 1000):.0f} MiB/s for the relay alone)"
              if cost > 0 else f"   relay's cost for 100 MiB: {cost:.1f} ms (within noise)")
        trues = interleave({
            "jobreport run --tail 0 -- true": runner(
                [*jobreport, "run", "--tail", "0", "--job", "t", "--", "true"], env, out),
            "jobreport run -- true (relayed)": runner(
                [*jobreport, "run", "--job", "t", "--", "true"], env, out),
        }, repeat * 2)
        for s in trues.values():
            print("   " + s.line())
        added = (trues["jobreport run -- true (relayed)"].median
                 - trues["jobreport run --tail 0 -- true"].median)
        print(f"   the relay adds {added:.1f} ms to a run")
        memory = [copier_memory(jobreport, env, out) for _ in range(3)]
        rss = Stats("copier Rss", [m["Rss"] * 1024 for m in memory], "MiB")
        dirty = Stats("copier Private_Dirty", [m["Private_Dirty"] * 1024 for m in memory],
                      "MiB")
        print("   " + rss.line())
        print("   " + dirty.line())
        results.update({"throughput": [s.to_json() for s in stats.values()],
                        "true": [s.to_json() for s in trues.values()],
                        "copier_memory": [rss.to_json(), dirty.to_json()]})
    write_json(opts.json, "bench_relay.py", results)


if __name__ == "__main__":
    main()
