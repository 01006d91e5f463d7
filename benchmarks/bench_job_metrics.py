"""One ``with job_metrics(...)`` around an empty body, in a warm process, against a real
Pushgateway, versus one raw ``pushadd_to_gateway`` of the same metrics.

Targets: at most 3x the raw push, and under 5 ms.

    .venv/bin/python benchmarks/bench_job_metrics.py [--repeat 300]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
from pathlib import Path

from _common import header, interleave, parser, pushgateway, verdict, write_json

from jobreport import job_metrics, load_config


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--profile", action="store_true", help="print a cProfile of job_metrics")
    opts = args.parse_args()
    repeat = opts.repeat or 300
    header("job_metrics around an empty body vs raw pushadd_to_gateway (warm process)")
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        from prometheus_client.exposition import pushadd_to_gateway

        from jobreport.store.store import Store
        from tests.registry import registry_for

        config = load_config(env={}, gateway=url, db=f"sqlite:///{tmp}/store.db",
                             instance="bench")

        def with_block() -> None:
            with job_metrics("bench", config=config):
                pass

        with_block()
        # the same metrics as the block's end push, pushed raw to its own group
        state, _ = Store(config.db).group_state(
            '{"instance":"bench","job":"bench"}')
        registry = registry_for(state)

        def raw() -> None:
            pushadd_to_gateway(url, job="bench_raw", registry=registry,
                               grouping_key={"instance": "bench"})

        stats = interleave({"raw pushadd_to_gateway": raw,
                            "with job_metrics(...): pass": with_block}, repeat, warmup=20)
        for s in stats.values():
            print("   " + s.line())
        base = stats["raw pushadd_to_gateway"].median
        ours = stats["with job_metrics(...): pass"].median
        ratio = ours / base
        lines = [
            verdict("job_metrics <= 3x raw push", ratio <= 3.0,
                    f"{ours:.2f} ms vs {base:.2f} ms = {ratio:.2f}x"),
            verdict("job_metrics < 5 ms", ours < 5.0, f"{ours:.2f} ms"),
        ]
        if opts.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(100):
                with_block()
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())
        write_json(opts.json, "bench_job_metrics.py",
                   {"stats": [s.to_json() for s in stats.values()], "ratio": round(ratio, 2),
                    "verdicts": lines})


if __name__ == "__main__":
    main()
