"""Where start-up time goes: ``python -X importtime`` on a regular install of this checkout.

1. The real path of ``jobreport run -- true``, cut where the command is spawned (an audit
   hook on ``os.posix_spawn`` marks the point): every module loaded before the command
   starts, with its own import time (the minimum over several runs, which filters out the
   noise of a shared machine) and the module that imported it; then the total against
   ``python -c pass``'s own imports.
2. Other import paths (the end of a run, which loads while the command runs; ``history``;
   the baseline push script): the wall time of ``python -c "import ..."`` against
   ``python -c pass``.

    .venv/bin/python benchmarks/importtime.py [--repeat 9]
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import clean_env, header, parser, write_json
from _install import install

PATHS = {
    "the end of a run (loaded while the child runs)": [
        "jobreport.runs", "jobreport.store.store", "jobreport.sinks.pushgateway",
        "jobreport.exposition", "jobreport.sinks.transport", "tenacity"],
    "jobreport history": ["jobreport.cli.app", "jobreport.cli.history",
                          "jobreport.store.store"],
    "baseline: prometheus_client push script": [
        "subprocess", "prometheus_client", "prometheus_client.exposition"],
}

# Runs `jobreport ARGS` through the installed entry point; at the spawn of the command it
# writes a marker into the importtime output (stderr) and leaves.
_PROBE = """
import os, sys
def hook(event, args):
    if event in ("os.posix_spawn", "subprocess.Popen"):
        sys.stderr.write("=== the command starts here\\n")
        sys.stderr.flush()
        os._exit(0)
sys.addaudithook(hook)
sys.argv = ["jobreport", *sys.argv[1:]]
from jobreport.cli import main
main()
"""


def parse(stderr: str) -> list[tuple[str, int, int]]:
    """(module, self µs, depth) in the order importtime printed them (children first)."""
    rows = []
    for line in stderr.split("=== the command starts here", maxsplit=1)[0].splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _cumulative, name = line[len("import time:"):].split("|")
        rows.append((name.strip(), int(own), (len(name) - len(name.lstrip(" "))) // 2))
    return rows


def parents(rows: list[tuple[str, int, int]]) -> dict[str, str]:
    """Who imported each module: the next row printed at a lower depth."""
    result = {}
    for i, (name, _own, depth) in enumerate(rows):
        result[name] = next((n for n, _o, d in rows[i + 1:] if d < depth), "the run")
    return result


def run_path(python: str, jobreport_env: dict[str, str], repeat: int,
             cwd: str) -> dict[str, object]:
    own: dict[str, list[int]] = defaultdict(list)
    who: dict[str, str] = {}
    base: dict[str, list[int]] = defaultdict(list)
    for _ in range(repeat):
        err = subprocess.run([python, "-X", "importtime", "-c", _PROBE, "run", "--job", "t",
                              "--", "true"], capture_output=True, text=True,
                             env=jobreport_env, cwd=cwd, check=False).stderr
        if "=== the command starts here" not in err:
            raise SystemExit(f"the probe did not reach the command's start:\n{err[-2000:]}")
        rows = parse(err)
        who.update(parents(rows))
        for name, us, _depth in rows:
            own[name].append(us)
        for name, us, _depth in parse(subprocess.run(
                [python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                cwd=cwd, check=False).stderr):
            base[name].append(us)
    mins = {name: min(v) / 1000 for name, v in own.items()}
    base_total = sum(min(v) for v in base.values()) / 1000
    extra = {n: ms for n, ms in mins.items() if n not in base}
    total = sum(extra.values())
    print(f"\n   before the command starts: {len(extra)} modules beyond the interpreter's "
          f"own {len(base)}, {total:.1f} ms of import time (the interpreter's own imports: "
          f"{base_total:.1f} ms; minimum over {repeat} runs)")
    for name, ms in sorted(extra.items(), key=lambda kv: -kv[1])[:30]:
        print(f"      {ms:6.2f} ms  {name:<32} (imported by {who.get(name, '-')})")
    heavy = [m for m in ("click", "sqlalchemy", "requests", "prometheus_client", "psutil",
                         "tenacity", "google.protobuf") if m in mins]
    print(f"   heavy packages before the command starts: {', '.join(heavy) or 'none'}")
    return {"modules": sorted(extra), "import_ms": round(total, 1),
            "interpreter_import_ms": round(base_total, 1), "heavy": heavy}


def wall(python: str, modules: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", "import " + ", ".join(modules)], check=True, cwd=cwd)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 9
    header("import time by path (python -X importtime; regular install)")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        python, _ = install(Path(tmp))
        env = clean_env()
        env.update({"JOBREPORT_DB": f"sqlite:///{tmp}/store.db",
                    "XDG_CONFIG_HOME": f"{tmp}/config", "XDG_STATE_HOME": f"{tmp}/state"})
        results["run"] = run_path(python, env, repeat, tmp)
        base = statistics.median(wall(python, ["sys"], tmp) for _ in range(repeat))
        print(f"\n   python -c 'import sys' (interpreter + site): {base:.0f} ms wall")
        for label, modules in PATHS.items():
            ms = statistics.median(wall(python, modules, tmp) for _ in range(repeat))
            print(f"   {label}: {ms:.0f} ms wall ({ms - base:+.0f} ms over the interpreter)")
            results[label] = {"wall_ms": round(ms), "over_interpreter_ms": round(ms - base)}
    write_json(opts.json, "importtime.py", {"paths": results})


if __name__ == "__main__":
    main()
