"""Delivery cost per sink against the Pushgateway sink, in the same run.

1. One run's delivery: ``sink.deliver(state, complete=True)`` of one group's whole state,
   interleaved across the sinks: the Pushgateway (a real one, the baseline), remote write
   into a real VictoriaMetrics (and into a real Prometheus receiver), the textfile sink.
2. ``flush`` of 10,000 pending runs over 100 groups, one sink at a time (every group marked
   undelivered again between repeats), interleaved.

    .venv/bin/python benchmarks/bench_sinks.py [--repeat 7] [--json FILE]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import header, interleave, parser, write_json
from populate import populate

from jobreport import load_config
from jobreport.delivery import flush
from jobreport.sinks.base import Delivered, Sink
from jobreport.sinks.configured import configured_sinks

RUNS, GROUPS = 10_000, 100


def mark_pending(db: Path, sink: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE jobreport_deliveries SET delivered_seq = 0 WHERE sink = ?", (sink,))
    conn.close()


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 7
    header(f"delivery per sink; flush of {RUNS} runs over {GROUPS} groups per sink")
    from tests import servers

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
        work = Path(tmp)
        gateway = servers.pushgateway(work / "pg").start()
        vm = servers.victoria_metrics(work / "vm").start()
        (work / "prom.yml").write_text("global: {scrape_interval: 1m}\n")
        prom = servers.prometheus(work / "prom", work / "prom.yml",
                                  extra=["--web.enable-remote-write-receiver"]).start()
        textfiles = work / "textfile"
        textfiles.mkdir()
        try:
            db = work / "store.db"
            t0 = time.perf_counter()
            keys = populate(db, RUNS, GROUPS, pending=True)
            print(f"   store filled in {time.perf_counter() - t0:.1f} s")
            base = {"JOBREPORT_DB": f"sqlite:///{db}", "JOBREPORT_INSTANCE": "bench"}
            configs = {
                "pushgateway": {"JOBREPORT_GATEWAY": gateway.url},
                "remote-write (VictoriaMetrics)": {
                    "JOBREPORT_REMOTE_WRITE_URL": f"{vm.url}/api/v1/write"},
                "remote-write (Prometheus)": {
                    "JOBREPORT_REMOTE_WRITE_URL": f"{prom.url}/api/v1/write"},
                "textfile": {"JOBREPORT_TEXTFILE_DIR": str(textfiles)},
            }
            sinks: dict[str, Sink] = {}
            for label, env in configs.items():
                config = load_config(env={**base, **env})
                [sinks[label]] = configured_sinks(config)

            from jobreport.store.store import Store

            store = Store(f"sqlite:///{db}")
            state, _seq = store.group_state(keys[0])

            def one(sink: Sink) -> Callable[[], None]:
                def deliver() -> None:
                    outcome = sink.deliver(state, complete=True, budget=10.0)
                    assert isinstance(outcome, Delivered), outcome
                return deliver

            stats = interleave({label: one(s) for label, s in sinks.items()},
                               repeat=max(repeat * 10, 50), warmup=3)
            base_ms = stats["pushgateway"].median
            results["one_delivery"] = {}
            for label, st in stats.items():
                print(f"   one delivery, {st.line()}  ({st.median / base_ms:.2f}x)")
                results["one_delivery"][label] = st.to_json()  # type: ignore[index]

            def flusher(label: str) -> Callable[[], None]:
                config = load_config(env={**base, **configs[label]})
                sink = sinks[label]

                def run() -> None:
                    mark_pending(db, sink.name)
                    result = flush(config, sinks=[sink])
                    assert result.ok and result.groups == GROUPS, result
                return run

            flushes = interleave({label: flusher(label) for label in sinks}, repeat=repeat,
                                 warmup=1, unit="s")
            base_s = flushes["pushgateway"].median
            results["flush"] = {}
            for label, st in flushes.items():
                print(f"   flush 10k/100, {st.line()}  ({st.median / base_s:.2f}x)")
                results["flush"][label] = st.to_json()  # type: ignore[index]
        finally:
            prom.stop()
            vm.stop()
            gateway.stop()
    write_json(opts.json, "bench_sinks.py", results)


if __name__ == "__main__":
    main()
