"""jobreport.wrapper.metricsfile: what a wrapped command writes to $JOBREPORT_METRICS_FILE."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from jobreport.names import RESERVED_METRICS
from jobreport.result import CustomFamily
from jobreport.wrapper.metricsfile import MAX_BYTES, parse_assignments, parse_text, read_file
from tests.isolation import own_dirs


def by_name(families: list[CustomFamily]) -> dict[str, CustomFamily]:
    return {f.name: f for f in families}


def test_simple_name_value_lines_become_gauges() -> None:
    """`name value` lines are gauges with that value."""
    parsed = parse_text("backup_tables 42\nbytes_written 1.5e3\n")
    assert parsed.problems == []
    fams = by_name(parsed.families)
    assert fams["backup_tables"] == CustomFamily(
        "backup_tables", "", "gauge", (("backup_tables", (), 42.0),))
    assert fams["bytes_written"].samples[0][2] == 1500.0


def test_a_later_line_replaces_an_earlier_one() -> None:
    """Appending a new value for the same series replaces the old one."""
    parsed = parse_text("progress 1\nprogress 2\nprogress 3\n")
    assert parsed.families[0].samples == (("progress", (), 3.0),)


def test_text_exposition_with_help_type_and_labels() -> None:
    """# HELP, # TYPE and labelled samples of the text format are understood."""
    text = (
        "# HELP rows_copied Rows copied, by table.\n"
        "# TYPE rows_copied gauge\n"
        'rows_copied{table="users"} 10\n'
        'rows_copied{table="orders",schema="sales"} 20\n'
        "# a plain comment\n"
        "# TYPE retries_total counter\n"
        "retries_total 3\n"
    )
    parsed = parse_text(text)
    assert parsed.problems == []
    fams = by_name(parsed.families)
    rows = fams["rows_copied"]
    assert rows.help == "Rows copied, by table." and rows.type == "gauge"
    assert set(rows.samples) == {
        ("rows_copied", (("table", "users"),), 10.0),
        ("rows_copied", (("schema", "sales"), ("table", "orders")), 20.0),
    }
    retries = fams["retries"]
    assert retries.type == "counter"
    assert retries.samples == (("retries_total", (), 3.0),)


def test_counter_declared_without_total_suffix() -> None:
    """A counter named without _total gets its samples as name_total."""
    parsed = parse_text("# TYPE jobs_done counter\njobs_done_total 4\n")
    assert parsed.families == [
        CustomFamily("jobs_done", "", "counter", (("jobs_done_total", (), 4.0),))]


def test_label_values_with_escapes() -> None:
    """Quotes, backslashes and newlines in label values are unescaped."""
    parsed = parse_text('files{path="C:\\\\tmp \\"x\\"\\n"} 1\n')
    assert parsed.problems == []
    assert parsed.families[0].samples[0][1] == (("path", 'C:\\tmp "x"\n'),)


def test_special_values() -> None:
    """NaN and infinities are numbers in the text format."""
    parsed = parse_text("a NaN\nb +Inf\nc -Inf\n")
    values = {f.name: f.samples[0][2] for f in parsed.families}
    assert math.isnan(values["a"]) and values["b"] == math.inf and values["c"] == -math.inf


def test_bad_lines_are_reported_with_their_number_and_skipped() -> None:
    """Every bad line is named by number and reason; the good lines still count."""
    text = "\n".join([
        "good 1",                      # 1
        "no_value",                    # 2
        "word notanumber",             # 3
        "9starts_with_digit 1",        # 4
        "jobreport_last_duration_seconds 5",  # 5: jobreport's own namespace
        "stamped 1 1700000000000",     # 6: timestamps are refused
        'bad_labels{a=b} 1',           # 7
        'reserved{job="x"} 1',         # 8
        "# TYPE h stateset",           # 9
        "also_good 2",                 # 10
        'dup{a="1",a="2"} 1',          # 11
    ])
    parsed = parse_text(text)
    assert {f.name for f in parsed.families} == {"good", "also_good"}
    numbers = [int(p.split(":")[0].removeprefix("line ")) for p in parsed.problems]
    assert numbers == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    joined = "\n".join(parsed.problems)
    assert "'notanumber' is not a number" in joined
    assert "reserved" in joined
    assert "timestamps are not allowed" in joined
    assert "stateset is not supported" in joined


def test_what_generate_latest_writes_is_understood() -> None:
    """A registry written by prometheus_client (counter with _created, histogram, summary)
    is read back as the same families."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest

    registry = CollectorRegistry()
    Counter("reqs", "Requests", ["code"], registry=registry).labels("200").inc(3)
    Histogram("lat", "Latency", registry=registry, buckets=(0.1, 1)).observe(0.5)
    Summary("sz", "Size", registry=registry).observe(3)
    parsed = parse_text(generate_latest(registry).decode())
    assert parsed.problems == []
    fams = by_name(parsed.families)
    assert fams["reqs"].type == "counter"
    assert fams["reqs"].samples == (("reqs_total", (("code", "200"),), 3.0),)
    assert fams["reqs_created"].type == "gauge"
    lat = fams["lat"]
    assert lat.type == "histogram"
    assert {(n, dict(labels).get("le"), v) for n, labels, v in lat.samples} == {
        ("lat_bucket", "0.1", 0.0), ("lat_bucket", "1.0", 1.0), ("lat_bucket", "+Inf", 1.0),
        ("lat_count", None, 1.0), ("lat_sum", None, 0.5)}
    assert fams["sz"].type == "summary"
    assert {n for n, _l, _v in fams["sz"].samples} == {"sz_count", "sz_sum"}


def test_size_and_items_handed_over_by_job_metrics() -> None:
    """jobreport_last_size_bytes and jobreport_last_items (what job_metrics writes inside
    `jobreport run`) become the run's size and items instead of custom metrics."""
    text = ("# HELP jobreport_last_size_bytes x\n# TYPE jobreport_last_size_bytes gauge\n"
            "jobreport_last_size_bytes 1024.0\n"
            "jobreport_last_items 7\njobreport_last_items 9\ntables 3\n")
    parsed = parse_text(text)
    assert parsed.problems == []
    assert (parsed.size, parsed.items) == (1024.0, 9.0)
    assert [f.name for f in parsed.families] == ["tables"]


def test_counter_cannot_go_negative() -> None:
    """A negative counter sample is a bad line."""
    parsed = parse_text("# TYPE c counter\nc_total -1\n")
    assert parsed.families == [] and parsed.problems[0].startswith("line 2:")


def test_type_after_samples_is_refused() -> None:
    """Changing a family's type after its samples is reported."""
    parsed = parse_text("x 1\n# TYPE x counter\n")
    assert parsed.problems and parsed.problems[0].startswith("line 2:")
    assert parsed.families[0].type == "gauge"


def test_namespace_is_configurable() -> None:
    """The refused namespace follows the configured one."""
    parsed = parse_text("jobreport_x 1\nmyns_x 2\n", namespace="myns")
    assert [f.name for f in parsed.families] == ["jobreport_x"]
    assert parsed.problems[0].startswith("line 2:")


def test_long_bad_lines_are_shortened_in_messages() -> None:
    """A very long bad line does not flood the warning."""
    parsed = parse_text("x" * 5000 + " y\n")
    assert len(parsed.problems) == 1 and len(parsed.problems[0]) < 300


def test_read_file_missing_and_empty(tmp_path: Path) -> None:
    """A file never written or left empty holds no metrics and no problems."""
    assert read_file(tmp_path / "missing").families == []
    empty = tmp_path / "empty"
    empty.write_text("")
    parsed = read_file(empty)
    assert parsed.families == [] and parsed.problems == []


def test_read_file_is_bounded(tmp_path: Path) -> None:
    """Only the first MAX_BYTES are read, and that is reported."""
    big = tmp_path / "big"
    with open(big, "w") as f:
        f.write("first 1\n")
        f.write("# " + "x" * (MAX_BYTES + 10) + "\n")
    parsed = read_file(big)
    assert [f.name for f in parsed.families] == ["first"]
    assert any("first" in p and "bytes" in p for p in parsed.problems)


def test_read_file_written_by_a_shell(tmp_path: Path) -> None:
    """The way the docs tell shell scripts to write it works."""
    path = tmp_path / "metrics"
    subprocess.run(
        ["sh", "-c", 'echo "backup_tables 42" >> "$F"; printf \'files{kind="db"} 3\\n\' >> "$F"'],
        env=own_dirs(F=str(path), PATH="/usr/bin:/bin"), check=True)
    parsed = read_file(path)
    assert parsed.problems == []
    assert {f.name: f.samples for f in parsed.families} == {
        "backup_tables": (("backup_tables", (), 42.0),),
        "files": (("files", (("kind", "db"),), 3.0),),
    }


def test_invalid_utf8_does_not_break_parsing(tmp_path: Path) -> None:
    """Garbage bytes make a bad line, not an exception."""
    path = tmp_path / "metrics"
    path.write_bytes(b"ok 1\n\xff\xfe 2\n")
    parsed = read_file(path)
    assert [f.name for f in parsed.families] == ["ok"]
    assert parsed.problems[0].startswith("line 2:")


def test_assignments() -> None:
    """NAME=VALUE arguments, with labels, and bad ones reported by argument."""
    parsed = parse_assignments(["tables=42", 'rows{table="a"}=7', "oops", "x=abc", "=3"])
    fams = by_name(parsed.families)
    assert fams["tables"].samples == (("tables", (), 42.0),)
    assert fams["rows"].samples == (("rows", (("table", "a"),), 7.0),)
    assert len(parsed.problems) == 3
    assert parsed.problems[0].startswith("'oops'")
    assert "'abc' is not a number" in parsed.problems[1]


@given(st.text(max_size=300))
def test_any_text_never_raises(text: str) -> None:
    """Whatever a job writes, parsing returns families and problems; it never raises."""
    parsed = parse_text(text)
    assert isinstance(parsed.families, list) and isinstance(parsed.problems, list)


@given(
    st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
        lambda n: not n.startswith(("jobreport_", "__")) and n not in RESERVED_METRICS),
    st.floats(allow_nan=False),
)
def test_any_valid_name_and_value_round_trip(name: str, value: float) -> None:
    """Every valid name and finite value written by repr() is read back exactly."""
    parsed = parse_text(f"{name} {value!r}\n")
    assert parsed.problems == []
    assert parsed.families[0].samples == ((name, (), value),)


def test_a_line_cut_by_the_limit_is_dropped_and_named(tmp_path: Path) -> None:
    """A file over the limit cut inside a number: that line is dropped (never pushed cut)
    with a problem naming its line number."""
    big = tmp_path / "big"
    head = b"first 1\n" + b"#" * (MAX_BYTES - 8 - 13) + b"\n"
    data = head + b"important 123456789\n"  # the limit falls inside "123456789"
    big.write_bytes(data)
    parsed = read_file(big)
    assert [f.name for f in parsed.families] == ["first"]
    assert any("line 3" in p and "important" in p and "dropped" in p for p in parsed.problems)


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    """A FIFO (nobody writing) is refused at once instead of blocking the read."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    parsed = read_file(fifo, timeout=60)
    assert parsed.families == []
    assert any("not a regular file" in p for p in parsed.problems)


def test_pushed_names_are_refused_in_the_configured_namespace_only() -> None:
    """`jobreport push` refuses the names of jobreport's namespace: the configured one
    (JOBREPORT_NAMESPACE) when one is set, jobreport_ otherwise (docs/cli.md)."""
    from jobreport.wrapper.metricsfile import parse_assignments

    assert parse_assignments(("jobreport_y=2",), "myns").problems == []
    [problem] = parse_assignments(("myns_y=2",), "myns").problems
    assert "is reserved" in problem and "myns_" in problem
    [problem] = parse_assignments(("jobreport_y=2",)).problems
    assert "is reserved" in problem
