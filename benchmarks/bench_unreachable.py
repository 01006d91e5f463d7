"""What an unreachable or dripping gateway costs, against a live gateway in the same run.

Targets: with the gateway refusing connections, the first
`jobreport run -- true` adds at most the budget, the following runs at most 1 s each, and
`jobreport flush` of 100 pending groups takes at most the budget + 1 s; a gateway that
drips its answer one byte at a time adds at most the budget + 1 s. The baseline is
`jobreport run -- true` against a live Pushgateway, interleaved with the other figures.

    .venv/bin/python benchmarks/bench_unreachable.py [--repeat 5] [--budget 10] [--drip-budget 2]
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from _common import JOBREPORT, Stats, header, interleave, parser, pushgateway, verdict, write_json

from jobreport import job_metrics, load_config
from tests.servers import free_port
from tests.stubs import DRIP, Stub

GROUPS = 100


def command(args: list[str], env: Mapping[str, str]) -> Callable[[], None]:
    def run() -> None:
        proc = subprocess.run([JOBREPORT, *args], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=300, check=False)
        if args[0] == "run" and proc.returncode != 0:
            print(f"   jobreport {args[0]} exited {proc.returncode}: {proc.stderr[-300:]}")
    return run


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--budget", type=float, default=10.0, help="JOBREPORT_BUDGET, seconds")
    args.add_argument("--drip-budget", type=float, default=2.0,
                      help="JOBREPORT_BUDGET for the dripping gateway, seconds")
    opts = args.parse_args()
    repeat = opts.repeat or 5
    budget, drip_budget = opts.budget, opts.drip_budget
    header(f"refused and dripping gateways; budget {budget:g} s (drip: {drip_budget:g} s), "
           "start budget 1 s, timeout 5 s")
    verdicts: list[str] = []
    results: dict[str, object] = {"budget": budget, "drip_budget": drip_budget}
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as live, \
            Stub(mode=DRIP, drip_every=0.2) as drip:
        root = Path(tmp)
        refused = f"http://127.0.0.1:{free_port()}"
        base = {"JOBREPORT_INSTANCE": "bench", "JOBREPORT_BUDGET": f"{budget:g}s",
                "JOBREPORT_START_BUDGET": "1s", "JOBREPORT_TIMEOUT": "5s"}

        def env(url: str, state: Path, **extra: str) -> dict[str, str]:
            state.mkdir(parents=True, exist_ok=True)
            return {**base, "JOBREPORT_GATEWAY": url,
                    "JOBREPORT_DB": f"sqlite:///{state / 's.db'}",
                    "XDG_STATE_HOME": str(state), **extra}

        fresh = itertools.count()

        def first_refused() -> None:
            # a new state directory every time: no memory of the refusal yet
            command(["run", "--job", "bench", "--", "true"],
                    env(refused, root / f"first{next(fresh)}"))()

        later_state = root / "later"
        command(["run", "--job", "bench", "--", "true"], env(refused, later_state))()  # remember

        stats = interleave({
            "run -- true, live gateway": command(["run", "--job", "bench", "--", "true"],
                                                 env(live, root / "live")),
            "run -- true, refused, first run": first_refused,
            "run -- true, refused, later runs": command(["run", "--job", "bench", "--", "true"],
                                                        env(refused, later_state)),
            "run -- true, dripping gateway": command(
                ["run", "--job", "bench", "--", "true"],
                env(drip.url, root / "drip", JOBREPORT_BUDGET=f"{drip_budget:g}s")),
        }, repeat, warmup=1, unit="s")
        for s in stats.values():
            print("   " + s.line())
        live_s = stats["run -- true, live gateway"]
        first = stats["run -- true, refused, first run"]
        later = stats["run -- true, refused, later runs"]
        dripping = stats["run -- true, dripping gateway"]
        # verdicts on the median added delay (the worst is printed too: on this shared
        # 2-core machine one slow process start is noise, not the retry policy)
        for label, s, limit in (
                (f"refused, first run adds <= budget ({budget:g} s)", first, budget),
                ("refused, later runs add <= 1 s", later, 1.0),
                (f"dripping gateway adds <= budget + 1 s ({drip_budget + 1:g} s)", dripping,
                 drip_budget + 1)):
            added = s.median - live_s.median
            verdicts.append(verdict(label, added <= limit,
                                    f"median {added:.2f} s added, worst "
                                    f"{s.max - live_s.median:.2f} s"))
        results["runs"] = [s.to_json() for s in stats.values()]

        # flush of 100 pending groups: recorded without a gateway, then flushed at a refused
        # one, once with no memory of it (the worst case) and once right after a refusal
        flush_state = root / "flush"
        offline = load_config(env={}, db=f"sqlite:///{flush_state / 's.db'}", instance="bench")
        flush_state.mkdir()
        for i in range(GROUPS):
            with job_metrics(f"job{i:03d}", config=offline):
                pass
        memory = flush_state / "s.db"
        # baseline: the same command with nothing to deliver (its start-up and store read)
        idle_state = root / "idle"
        names = ("flush, nothing pending, live gateway",
                 "flush of 100 pending, refused, no memory",
                 "flush of 100 pending, refused, remembered")
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeat):
            for old in memory.parent.glob("unreachable-*.json"):
                old.unlink()
            for name in names:
                run = (command(["flush"], env(live, idle_state)) if name == names[0]
                       else command(["flush"], env(refused, flush_state)))
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        idle = Stats(names[0], times[names[0]], "s")
        print("   " + idle.line())
        results[names[0]] = idle.to_json()
        for name in names[1:]:
            s = Stats(name, times[name], "s")
            print("   " + s.line())
            added = s.median - idle.median
            verdicts.append(verdict(f"{name} adds <= budget + 1 s ({budget + 1:g} s)",
                                    added <= budget + 1,
                                    f"median {added:.2f} s added (worst "
                                    f"{s.max - idle.median:.2f} s), {s.median:.2f} s in all"))
            results[name] = s.to_json()
        pending = load_config(env={}, db=f"sqlite:///{flush_state / 's.db'}")
        from jobreport.store.store import Store

        left = len(Store(pending.db).pending())
        print(f"   groups still pending after the refused flushes: {left} (expected {GROUPS})")
        print(f"   requests the dripping gateway got: {len(drip.requests)}")
    write_json(opts.json, "bench_unreachable.py", {**results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
