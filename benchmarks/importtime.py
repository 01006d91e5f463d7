"""Where start-up time goes: ``python -X importtime`` on the import paths of ``jobreport``.

For each path (what ``jobreport run`` loads before it starts the child; what the end of a
run adds; what ``jobreport history`` needs) prints the wall time of ``python -c "import
..."`` (median of several runs, against ``python -c pass``) and the heaviest top-level
imports with their cumulative import time (median over the same runs).

    .venv/bin/python benchmarks/importtime.py [--repeat 7]
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections import defaultdict

from _common import PYTHON, header, parser, write_json

PATHS = {
    "before the child starts (jobreport run)": [
        "jobreport.cli", "jobreport.wrapper.wrapper", "jobreport.config", "jobreport.wrapper.child",
        "jobreport.wrapper.metricsfile"],
    "the end of a run (loaded while the child runs)": [
        "jobreport.reporter", "jobreport.store.store", "jobreport.sinks.pushgateway", "jobreport.exposition",
        "requests", "tenacity", "prometheus_client.exposition", "psutil"],
    "jobreport history": ["jobreport.cli", "jobreport.store.store"],
    "baseline: prometheus_client push script": [
        "subprocess", "prometheus_client", "prometheus_client.exposition"],
}


def import_times(modules: list[str], skip: set[str]) -> tuple[float, dict[str, float]]:
    code = "import " + ", ".join(modules)
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-X", "importtime", "-c", code], capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t0
    top: dict[str, float] = {}
    children: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        ms = int(cumulative) / 1000.0
        if depth == 1:
            children.append((name.strip(), ms))  # printed before their parent
        elif depth == 0:
            if name.strip() not in skip:
                top[name.strip()] = ms
                for child, child_ms in children:
                    top[f"{name.strip()} > {child}"] = child_ms
            children = []
    return wall * 1000, top


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 7
    header("import time by path (python -X importtime; ms)")
    _, startup = import_times(["sys"], set())
    skip = set(startup)  # what every interpreter imports at start-up
    base = statistics.median(
        import_times(["sys"], set())[0] for _ in range(repeat))
    print(f"   python -c 'import sys' (interpreter + site): {base:.0f} ms")
    results = {}
    for label, modules in PATHS.items():
        walls = []
        tops: dict[str, list[float]] = defaultdict(list)
        for _ in range(repeat):
            wall, top = import_times(modules, skip)
            walls.append(wall)
            for name, ms in top.items():
                tops[name].append(ms)
        wall = statistics.median(walls)
        heaviest = sorted(((statistics.median(v), k) for k, v in tops.items()), reverse=True)
        print(f"\n   {label}: {wall:.0f} ms wall ({wall - base:+.0f} ms over the interpreter)")
        for ms, name in heaviest[:14]:
            if ms >= 3:
                print(f"      {ms:7.1f} ms  {name}")
        results[label] = {"wall_ms": round(wall), "over_interpreter_ms": round(wall - base),
                          "top": [[name, round(ms, 1)] for ms, name in heaviest[:10]]}
    write_json(opts.json, "importtime.py", {"paths": results})


if __name__ == "__main__":
    main()
