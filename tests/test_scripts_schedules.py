"""scripts/cron/jobreport.crontab and scripts/systemd/backup.{service,timer}: each --schedule
is its own crontab line's or timer's schedule, the thresholds follow from the schedules, and
every command in them really runs (paths pointed at a
temporary directory, a real Pushgateway) and reports exactly one run."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from jobreport.cron import check_expression
from jobreport.durations import parse_duration
from jobreport.schedule import Schedule, deadlines
from tests.conftest import Gateway
from tests.test_scripts_download import SHA, FileServer, files  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
CRONTAB = ROOT / "scripts" / "cron" / "jobreport.crontab"
SERVICE = ROOT / "scripts" / "systemd" / "backup.service"
TIMER = ROOT / "scripts" / "systemd" / "backup.timer"
BIN = Path(sys.executable).parent
HOUR, DAY = 3600.0, 86400.0


def crontab() -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """The crontab's environment lines and its (five schedule fields, command) lines."""
    env: dict[str, str] = {}
    jobs = []
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line)
        if m:
            env[m.group(1)] = m.group(2)
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab line: {line!r}"
        jobs.append((fields[:5], fields[5]))
    return env, jobs


def shortest_gap(schedule: str, days: int = 15) -> float:
    """The shortest time between two fire times of ``schedule`` over ``days`` days."""
    job = Schedule(schedule, "UTC")
    fires = job.fires(0.0, 1)
    while fires[-1] < days * DAY:
        fires += job.fires(fires[-1], 50)
    return min(b - a for a, b in itertools.pairwise(fires))


def run_options(command: str) -> dict[str, str]:
    """The options given to `jobreport run` in ``command`` (up to ``--``)."""
    argv = shlex.split(command)
    assert argv[:2] == ["jobreport", "run"] or argv[1:3] == ["run", "--job"], argv
    options: dict[str, str] = {}
    rest = argv[argv.index("run") + 1:argv.index("--")]
    while rest:
        flag = rest.pop(0)
        options[flag] = "" if flag == "--lock" else rest.pop(0)
    return options


def test_crontab_thresholds_follow_the_schedule() -> None:
    """Each line's --schedule is the line's own five fields (so jobreport's deadlines are
    cron's); --max-runtime < --timeout < the shortest gap between two fire times, so that a
    run is killed before the next one is due; every line has a --job."""
    env, jobs = crontab()
    assert {"SHELL", "PATH", "JOBREPORT_GATEWAY"} <= set(env)
    assert len(jobs) == 5
    for fields, command in jobs:
        opts = run_options(command)
        assert opts["--job"]
        assert "--expect-every" not in opts, command
        assert opts["--schedule"].split() == fields, command
        assert check_expression(opts["--schedule"]) == " ".join(fields)
        gap = shortest_gap(opts["--schedule"])
        assert parse_duration(opts["--max-runtime"]) < parse_duration(opts["--timeout"]) < gap
        assert "%" not in command  # cron turns % into a newline


def test_crontab_has_a_weekday_job_that_is_not_due_on_the_weekend() -> None:
    """The weekday line's Friday run is next due on Monday: its deadlines skip the weekend."""
    _env, jobs = crontab()
    [weekday] = [run_options(c) for f, c in jobs if f[4] == "1-5"]
    job = Schedule(weekday["--schedule"], "UTC")
    friday = datetime(2026, 11, 27, 3, 31, tzinfo=timezone.utc).timestamp()
    due = deadlines(job, last_success=friday, last_start=friday - 60, last_end=friday)
    monday = datetime(2026, 11, 30, 3, 30, tzinfo=timezone.utc).timestamp()
    assert due.start == monday + 0.1 * DAY


def example_data(data: Path) -> None:
    """What the example jobs expect to find under $DATA."""
    data.mkdir()
    con = sqlite3.connect(data / "app.db")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO notes (body) VALUES (?)", [("n",)] * 25)
    con.commit()
    con.close()
    for sub in ("backups", "downloads", "archives", "www"):
        (data / sub).mkdir()
    (data / "www" / "index.html").write_text("<h1>hello</h1>\n")


def test_every_crontab_line_runs_and_reports_once(tmp_path: Path, gateway: Gateway,
                                                  files: FileServer) -> None:
    """Each command, run by sh with the crontab's environment (paths pointed at a temporary
    directory), succeeds, does its work and leaves one successful run of its job."""
    env, jobs = crontab()
    data = tmp_path / "data"
    example_data(data)
    run_env = {
        **os.environ, **env,
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "APP": str(ROOT), "DATA": str(data),
        "JOBREPORT_GATEWAY": gateway.url,
        "DOWNLOAD_URL": f"{files.url}/data.bin#sha256={SHA}",
        "PYTHONPATH": str(ROOT),
    }
    for _fields, command in jobs:
        job = run_options(command)["--job"]
        proc = subprocess.run(["/bin/sh", "-c", command], env=run_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"{job}: {proc.stderr}"
        s = gateway.samples(job)
        assert s['jobreport_runs_total{outcome="success"}'] == 1, job  # one run, not two
        assert s["jobreport_last_cpu_seconds"] > 0
    assert len(list((data / "backups").iterdir())) == 1
    assert (data / "downloads" / "data.bin").stat().st_size == 307200
    assert (data / "sample.stats.tsv").exists()
    assert (data / "model.json").exists()
    assert len(list((data / "archives").iterdir())) == 1
    backup = gateway.samples("backup")
    assert backup["jobreport_last_items"] == 25  # the script's figures joined the wrapper's run
    assert backup["backup_tables"] == 1
    assert gateway.samples("train")["train_accuracy"] >= 0.7
    assert gateway.samples("archive")["archive_files"] == 1


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]} (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: bad line {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def timespan(text: str) -> float:
    """A systemd time span such as ``3h15min`` or ``10min``, in seconds."""
    return parse_duration(text.replace("min", "m").replace("sec", "s"))


def on_calendar_as_cron(text: str) -> str:
    """The cron fields of the simple OnCalendar forms the examples use:
    ``[DOW[..DOW]] *-*-* HH:MM[:SS]`` (seconds must be 00)."""
    days = {"Sun": 0, "Mon": 1, "Tue": 2, "Wed": 3, "Thu": 4, "Fri": 5, "Sat": 6}
    m = re.fullmatch(r"(?:(\w{3})(?:\.\.(\w{3}))? )?\*-\*-\* (\d\d):(\d\d)(?::00)?", text)
    assert m, f"OnCalendar={text}: not a form this test knows"
    first, last, hour, minute = m.groups()
    dow = "*" if first is None else (
        str(days[first]) if last is None else f"{days[first]}-{days[last]}")
    return f"{int(minute)} {int(hour)} * * {dow}"


def test_systemd_units_agree_with_each_other() -> None:
    """The timer fires daily at 02:00 and the service's --schedule is that same schedule
    (also by systemd's own reckoning of the next elapses); its systemd limit lies behind
    jobreport's --timeout, and a stop reaches jobreport first."""
    service, timer = unit(SERVICE), unit(TIMER)
    t = dict(timer["Timer"])
    assert t["OnCalendar"] == "*-*-* 02:00:00"
    assert t["Persistent"] == "true"
    assert dict(timer["Install"])["WantedBy"] == "timers.target"
    s = dict(service["Service"])
    assert s["Type"] == "oneshot"
    assert s["KillMode"] == "mixed"
    opts = run_options(s["ExecStart"].replace("/opt/jobreport/.venv/bin/jobreport", "jobreport"))
    assert "--expect-every" not in opts
    assert opts["--schedule"] == on_calendar_as_cron(t["OnCalendar"])
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # systemd's own next elapses, in UTC, against jobreport's
        out = subprocess.run([analyze, "calendar", "--iterations=3", t["OnCalendar"]],
                             env={**os.environ, "TZ": "UTC"}, capture_output=True, text=True,
                             check=True, timeout=60).stdout
        elapses = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
                   for m in re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)]
        assert len(elapses) == 3, out
        mine = Schedule(opts["--schedule"], "UTC").fires(elapses[0].timestamp() - 1, 3)
        assert mine == [e.timestamp() for e in elapses]
    # the timer's random delay fits in the default grace (10% of a day)
    assert timespan(t["RandomizedDelaySec"]) < 0.1 * DAY
    limit = timespan(s["TimeoutStartSec"])
    assert parse_duration(opts["--max-runtime"]) < parse_duration(opts["--timeout"]) < limit


def test_systemd_exec_start_runs(tmp_path: Path, gateway: Gateway) -> None:
    """ExecStart, with the service's environment and its paths moved into a temporary
    directory, makes a backup and reports one successful run."""
    service = unit(SERVICE)["Service"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in service:
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
    data = tmp_path / "data"
    example_data(data)
    env["JOBREPORT_DB"] = f"sqlite:///{tmp_path / 'state.db'}"
    env["JOBREPORT_GATEWAY"] = gateway.url
    env["BACKUP_DB_URL"] = f"sqlite:///{data / 'app.db'}"
    exec_start = dict(service)["ExecStart"]
    argv = [
        arg.replace("/opt/jobreport/.venv/bin/", f"{BIN}/")
        .replace("/opt/jobreport", str(ROOT))
        .replace("/var/backups/app", str(data / "backups"))
        for arg in shlex.split(exec_start)
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    [backup] = (data / "backups").iterdir()
    assert backup.name.startswith("app-")
    s = gateway.samples("backup")
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s["jobreport_last_size_bytes"] == backup.stat().st_size
    assert "jobreport_expected_interval_seconds" not in s
    assert s["jobreport_max_runtime_seconds"] == HOUR
    # due by the next 02:00 (host time) after the run, + --max-runtime + 10% of a day
    ended = datetime.fromtimestamp(s["jobreport_last_end_timestamp_seconds"]).astimezone()
    next_fire = ended.replace(hour=2, minute=0, second=0, microsecond=0)
    if next_fire <= ended:
        next_fire = (ended + timedelta(days=1)).replace(hour=2, minute=0, second=0,
                                                        microsecond=0)
    next_fire = next_fire.replace(tzinfo=None).astimezone()  # the zone's offset on that day
    assert s["jobreport_start_deadline_timestamp_seconds"] == pytest.approx(
        next_fire.timestamp() + 0.1 * DAY, abs=1)
    assert s["jobreport_success_deadline_timestamp_seconds"] == pytest.approx(
        next_fire.timestamp() + HOUR + 0.1 * DAY, abs=1)
