"""What a Pushgateway costs as a fleet grows: 10 (the baseline), 1,000 and 10,000 groups of
28 series, with the gateway's default consistency check and with
``--push.disable-consistency-check``.

For each: the gateway's resident memory (loaded, and after answering the readings below:
the Go runtime keeps what rendering its answers took), the time of one push (jobreport's PUT of one
group's state, as the end of a run makes it), and the time of ``jobreport status`` and
``jobreport prune --older-than 30d --dry-run`` as whole commands (each reads every group
the gateway holds). Figures for docs/containers.md ("Fleet sizing").

    .venv/bin/python benchmarks/bench_fleet.py [--repeat 5] [--groups 10,1000,10000]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import JOBREPORT, Stats, header, parser, write_json
from _fleet import body, environment, fleet_gateway, grouping, rss_mib

from jobreport import load_config
from jobreport.sinks.pushgateway import PushgatewaySink


def command(args: list[str], url: str, db: Path) -> float:
    # (the default budget, 10 s, is not enough for status at 10,000 groups on this machine)
    env = environment(JOBREPORT_GATEWAY=url, JOBREPORT_DB=f"sqlite:///{db}",
                      JOBREPORT_BUDGET="300s", JOBREPORT_TIMEOUT="60s")
    t0 = time.perf_counter()
    done = subprocess.run([JOBREPORT, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    took = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    return took


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--groups", default="10,1000,10000")
    opts = p.parse_args()
    repeat = opts.repeat or 5
    header("a Pushgateway holding a fleet's groups")
    results: dict[str, object] = {}
    for check in (True, False):
        extra = [] if check else ["--push.disable-consistency-check"]
        what = "check on" if check else "check off"
        for groups in (int(n) for n in opts.groups.split(",")):
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                with fleet_gateway(tmp / "gw", groups, extra=extra) as (url, pid):
                    config = load_config(env={}, gateway=url, db=f"sqlite:///{tmp / 's.db'}")
                    sink = PushgatewaySink(config)
                    one = grouping(groups // 2)

                    def push(one: dict[str, str] = one, sink: PushgatewaySink = sink,
                             text: bytes = body(groups // 2)) -> None:
                        sink.push_text(one["job"], one, text, replace=True,
                                       deadline=time.monotonic() + 60)

                    push()
                    idle = rss_mib(pid)
                    pushes = Stats(f"push, {groups} groups, {what}",
                                   [_timed(push) for _ in range(repeat * 4)])
                    status = Stats(f"jobreport status, {groups} groups, {what}",
                                   [command(["status"], url, tmp / "s.db")
                                    for _ in range(repeat)])
                    prune = Stats(f"prune --dry-run, {groups} groups, {what}",
                                  [command(["prune", "--older-than", "30d", "--dry-run"], url,
                                           tmp / "s.db") for _ in range(repeat)])
                    memory = rss_mib(pid)
                    for s in (pushes, status, prune):
                        print(s.line())
                    print(f"{'gateway RSS, ' + str(groups) + ' groups, ' + what:<44} "
                          f"{idle:9.1f} MiB loaded, {memory:.1f} MiB after the readings")
                    results[f"{groups}_{'check' if check else 'nocheck'}"] = {
                        "push": pushes.to_json(), "status": status.to_json(),
                        "prune_dry_run": prune.to_json(), "gateway_rss_mib": round(idle, 1),
                        "gateway_rss_after_readings_mib": round(memory, 1)}
    write_json(opts.json, "bench_fleet.py", results)


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
