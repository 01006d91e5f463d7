"""The ``jobreport`` command line (click). Each command parses its options, calls one library
function and prints; library errors become one line with a hint and a documented exit code.

Heavy packages (SQLAlchemy, requests, prometheus_client) are imported inside the commands
that need them, never at module level: ``jobreport run`` starts its child first.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from jobreport._version import __version__
from jobreport.cli.formatting import (
    group_text,
    history_table,
    parse_since,
    run_details,
    status_table,
)
from jobreport.cli.options import (
    DURATION,
    config_from,
    json_option,
    label_option,
    opt,
    run_opt,
    settings_options,
    typed_labels,
)
from jobreport.errors import (
    ConfigError,
    InvalidNameError,
    JobReportError,
    PushError,
    StoreError,
)
from jobreport.outcomes import OUTCOMES

if TYPE_CHECKING:
    pass

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes of the commands other than ``run`` (which exits with the command's own code).
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_GATEWAY = PushError.exit_code
EXIT_STORE = StoreError.exit_code

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 1 a problem was found (check, flush); 2 usage or
configuration error; 3 the Pushgateway failed or refused; 4 the store failed.
`jobreport run` exits with the command's own code: 124 timeout, 126 not
executable, 127 not found, 128+N killed by signal N, 75 skipped (--lock).
"""


# --- errors at the boundary -------------------------------------------------------------


def fail(message: str, hint: str | None, exit_code: int) -> NoReturn:
    """Print a one-line error and its hint, and exit with ``exit_code``."""
    click.echo(f"jobreport: error: {message}", err=True)
    if hint:
        click.echo(f"jobreport: hint: {hint}", err=True)
    sys.exit(exit_code)


def _hint(error: JobReportError) -> str | None:
    if isinstance(error, ConfigError):
        return "`jobreport check` shows every setting and where its value came from"
    if isinstance(error, InvalidNameError):
        return "see `jobreport COMMAND --help` for what each option takes"
    if isinstance(error, PushError):
        if "no Pushgateway configured" in str(error):
            return "set JOBREPORT_GATEWAY=http://HOST:9091 or pass --gateway"
        if error.status in (401, 403):
            return ("set JOBREPORT_USERNAME with JOBREPORT_PASSWORD_FILE, or "
                    "JOBREPORT_TOKEN_FILE")
        return "is the Pushgateway running and reachable? `jobreport check` tests it"
    if isinstance(error, StoreError):
        return "check --db / JOBREPORT_DB; `jobreport check` tests the store"
    return None


def _library_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobReportError as e:
            fail(str(e), _hint(e), e.exit_code)

    return wrapper  # type: ignore[return-value]


# --- logging: jobreport's own warnings, one line each ----------------------------------


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message += f" ({type(exc).__name__}{': ' + first if first else ''})"
        return message


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (CliRunner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _setup_logging(quiet: bool = False) -> None:
    """jobreport's warnings as one line each on stderr, for the time of this command."""
    logger = logging.getLogger("jobreport")
    handler = _Stderr()
    handler.setFormatter(_OneLine())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    click.get_current_context().call_on_close(restore)


def _json(data: object) -> str:
    import json

    return json.dumps(data, indent=2)


# --- the commands -----------------------------------------------------------------------


class _Jobreport(click.Group):
    """The ``jobreport`` group. Started from the real command line (``args`` not given), it
    exits with ``os._exit`` once the command is done and its output flushed: tearing down
    SQLAlchemy and requests at interpreter exit would add a tenth of a second to every run
    of a cron job, for nothing (every write is committed, every push answered)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if args is not None or not standalone_mode:  # called from Python (tests, CliRunner)
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        try:
            super().main(prog_name=prog_name, complete_var=complete_var, **extra)
            code: object = 0
        except SystemExit as e:
            code = e.code
        _exit_now(code)


def _exit_now(code: object) -> NoReturn:
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    try:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with it closed (`>&-`), nothing to flush
                stream.flush()
    except Exception:  # a closed stdout must not change the exit code
        status = status or 1
    os._exit(status)


@click.group(cls=_Jobreport, context_settings=CONTEXT, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="jobreport")
def main() -> None:
    """Make cron and systemd-timer jobs report to Prometheus through a Pushgateway.

    \b
    Example:
      export JOBREPORT_GATEWAY=http://127.0.0.1:9091
      jobreport run --job backup --expect-every 24h -- pg_dump -f /backups/db.dump mydb
      jobreport status
    """


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=EXIT_CODES_HELP,
)
@opt("--job", envvar="JOBREPORT_RUN_JOB", metavar="NAME",
     help="Job name [default: the command's base name].")
@label_option("Extra grouping label (repeatable).")
@run_opt("--expect-every", envvar="JOBREPORT_EXPECT_EVERY", type=DURATION, metavar="DURATION",
         help="The job should succeed this often, e.g. 24h (overdue after this plus --grace).")
@run_opt("--grace", envvar="JOBREPORT_GRACE", type=DURATION, metavar="DURATION",
         help="Slack after --expect-every before the job is overdue [default: 10% of it].")
@run_opt("--max-runtime", envvar="JOBREPORT_MAX_RUNTIME", type=DURATION, metavar="DURATION",
         help="A run is stuck after this long (pushed for the alert; nothing is killed).")
@run_opt("--heartbeat", envvar="JOBREPORT_HEARTBEAT", type=DURATION, metavar="DURATION",
         help="Push a liveness timestamp this often while the command runs.")
@run_opt("--timeout", envvar="JOBREPORT_RUN_TIMEOUT", type=DURATION, metavar="DURATION",
         help="Stop the command's whole process tree after this long (exit code 124).")
@run_opt("--kill-after", envvar="JOBREPORT_KILL_AFTER", type=DURATION, metavar="DURATION",
         default="10s", show_default=True,
         help="After the timeout's SIGTERM, SIGKILL whatever still runs after this long.")
@opt("--size-path", "size_paths", envvar="JOBREPORT_SIZE_PATH", multiple=True,
     type=click.Path(), metavar="PATH",
     help="Report the bytes of this file or directory tree after the run as "
           "jobreport_last_size_bytes (repeatable; in the environment, separate with ':').")
@run_opt("--lock", is_flag=True, envvar="JOBREPORT_LOCK",
         help="Do not start while another run of this job (same group) runs on this host: "
              "record outcome skipped and exit 75.")
@run_opt("--tail", "tail_lines", envvar="JOBREPORT_TAIL", metavar="N",
         type=click.IntRange(min=0), default=20, show_default=True,
         help="Keep this many last lines of output in the history (only when the output is "
              "not a terminal; 0: none).")
@run_opt("--quiet", "-q", is_flag=True, envvar="JOBREPORT_QUIET",
         help="Print no warnings of jobreport's own (errors still show).")
@settings_options(lenient=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(**params: Any) -> NoReturn:
    """Run COMMAND and report the run to the Pushgateway; exit with COMMAND's exit code.

    COMMAND runs directly (no shell) with stdin, stdout and stderr passed through. It gets
    JOBREPORT_JOB, JOBREPORT_RUN_ID and JOBREPORT_METRICS_FILE (append `name value` lines
    to report metrics of your own). SIGTERM, SIGHUP and SIGINT are passed on to it. When the
    gateway or the store is down the command still runs; the run is kept for `jobreport
    flush`.

    \b
    Example:
      jobreport run --job backup --expect-every 24h --timeout 2h \\
          --size-path /backups/db.dump -- pg_dump -Fc -f /backups/db.dump mydb
    """
    _setup_logging(params["quiet"])
    from jobreport.wrapper.wrapper import RunRequest, run_job

    job = params["job"]
    if job is not None:
        from jobreport.names import check_job

        try:
            check_job(job)
        except InvalidNameError as e:
            raise click.BadParameter(str(e), param_hint="--job") from None
    request = RunRequest(
        argv=tuple(params["command"]), job=job, labels=typed_labels(params),
        expect_every=params["expect_every"], max_runtime=params["max_runtime"],
        grace=params["grace"], heartbeat=params["heartbeat"], timeout=params["timeout"],
        kill_after=params["kill_after"], size_paths=tuple(params["size_paths"]),
        lock=params["lock"], tail_lines=params["tail_lines"],
    )
    # a bad setting must not stop the job: warn and use the default
    config = config_from(params, strict=False)
    sys.exit(run_job(request, config))


@main.command(epilog=EXIT_CODES_HELP)
@opt("--job", envvar=["JOBREPORT_PUSH_JOB", "JOBREPORT_JOB"], required=True, metavar="NAME",
     help="The job whose group gets the values (inside `jobreport run`: that run's job).")
@label_option("Extra grouping label (repeatable).")
@settings_options()
@click.argument("values", nargs=-1, required=True, metavar="NAME=VALUE...")
@_library_errors
def push(**params: Any) -> None:
    """Push ad hoc values into a job's group (a POST: the group's other metrics stay).

    NAME may carry labels: 'rows{table="users"}=42'. Names in the jobreport_ namespace are
    refused.

    \b
    Example:
      jobreport push --job backup backup_tables=42 'rows{table="users"}=1200'
    """
    _setup_logging()
    from jobreport.gateway import push_values
    from jobreport.wrapper.metricsfile import parse_assignments

    config = config_from(params)
    parsed = parse_assignments(params["values"], config.namespace)
    if parsed.problems:
        raise click.UsageError("; ".join(parsed.problems))
    grouping = push_values(config, params["job"], parsed.families, typed_labels(params))
    click.echo(f"pushed {len(parsed.families)} metric(s) to {group_text(grouping)}")


@main.command(epilog=EXIT_CODES_HELP)
@opt("--all", "all_groups", is_flag=True, envvar="JOBREPORT_FLUSH_ALL",
     help="Push every group the store knows, delivered or not: restores a Pushgateway "
           "that lost its data (restarted without --persistence.file).")
@settings_options(instance=False)
@_library_errors
def flush(**params: Any) -> None:
    """Deliver every group whose newest state has not reached the gateway yet.

    One push per group carries its whole state, however many runs are pending (runs recorded
    while the gateway was down or not configured).

    \b
    Example:
      JOBREPORT_GATEWAY=http://127.0.0.1:9091 jobreport flush
      jobreport flush --all     # after the Pushgateway lost its data
    """
    _setup_logging()
    from jobreport.delivery import flush as flush_all

    result = flush_all(config_from(params), all_groups=params["all_groups"])
    if result.groups or not result.failed:
        click.echo(f"delivered {result.groups} group(s) carrying {result.runs} run(s)"
                   if result.groups else "nothing to deliver")
    if result.failed:
        # each failure was logged as a warning above
        click.echo(f"jobreport: {len(result.failed)} group(s) not delivered; they stay "
                   "pending for the next flush", err=True)
        sys.exit(EXIT_GATEWAY)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("job", required=False)
@opt("--limit", envvar="JOBREPORT_HISTORY_LIMIT", type=click.IntRange(min=1), default=20,
     show_default=True, help="Show at most this many runs.")
@opt("--since", envvar="JOBREPORT_HISTORY_SINCE", metavar="WHEN",
     help="Only runs started since: a duration ago (24h, 7d) or a date/time "
           "(2024-05-01, 2024-05-01T12:00).")
@opt("--outcome", "outcomes", envvar="JOBREPORT_HISTORY_OUTCOME", multiple=True,
     type=click.Choice(OUTCOMES), help="Only runs with this outcome (repeatable).")
@opt("--run", "run_id", envvar="JOBREPORT_HISTORY_RUN", metavar="ID",
     help="Show this one run in full, with the last lines of its output: its id in "
           "this list, or the $JOBREPORT_RUN_ID its command was given.")
@json_option()
@settings_options(instance=False)
@_library_errors
def history(**params: Any) -> None:
    """Show recent runs from the local store, newest first.

    \b
    Example:
      jobreport history backup --since 7d --outcome failure
      jobreport history --run 42
    """
    _setup_logging()
    from jobreport.store.store import Store

    config = config_from(params)
    store = Store(config.db)
    if params["run_id"] is not None:
        record = store.get_run(params["run_id"])
        if record is None:
            fail(f"no run {params['run_id']} in the store {store.display_url}",
                 "`jobreport history` lists the runs with their ids", EXIT_PROBLEM)
        if params["as_json"]:
            click.echo(_json(record.to_json()))
        else:
            click.echo(run_details(record))
        return
    since = parse_since(params["since"]) if params["since"] else None
    records = store.history(params["job"], limit=params["limit"], since=since,
                            outcomes=params["outcomes"])
    if params["as_json"]:
        click.echo(_json([r.to_json() for r in records]))
    elif not records:
        click.echo("no runs recorded" + (f" for job {params['job']}" if params["job"] else ""))
    else:
        click.echo(history_table(records))


@main.command(epilog=EXIT_CODES_HELP)
@json_option()
@settings_options(instance=False)
@_library_errors
def status(**params: Any) -> None:
    """Show what the Pushgateway holds now, per job and instance, problems first.

    A group has a problem when it is overdue (no success within its expected interval),
    its last run did not succeed, it runs longer than its max runtime, or pushes to it
    are failing. The exit code is 0 whatever the groups' state (alerts are Prometheus's
    job); it is 3 when the gateway cannot be read.

    \b
    Example:
      jobreport status --gateway http://127.0.0.1:9091
    """
    _setup_logging()
    from jobreport.gateway import gateway_status

    groups = gateway_status(config_from(params))
    if params["as_json"]:
        click.echo(_json([g.to_json() for g in groups]))
    elif not groups:
        click.echo("the Pushgateway holds no groups")
    else:
        click.echo(status_table(groups))


@main.command(epilog=EXIT_CODES_HELP)
@opt("--job", envvar="JOBREPORT_DELETE_JOB", required=True, metavar="NAME",
     help="The job whose group to remove.")
@label_option("Grouping label of the group (repeatable).")
@settings_options()
@_library_errors
def delete(**params: Any) -> None:
    """Remove one group (a retired job or host) from the Pushgateway.

    The group is the job with this host's instance (or --instance/--no-instance) and the
    labels. It is also marked delivered in the store, so `jobreport flush` does not bring
    it back.

    \b
    Example:
      jobreport delete --job backup --instance old-db-host
    """
    _setup_logging()
    from jobreport.gateway import delete_group

    grouping = delete_group(config_from(params), params["job"], typed_labels(params))
    click.echo(f"deleted {group_text(grouping)}")


@main.command(epilog=EXIT_CODES_HELP)
@settings_options()
def check(**params: Any) -> None:
    """Check the settings (with where each value came from), the store and the gateway.

    Secrets are never shown. Exits 1 when anything is wrong.

    \b
    Example:
      JOBREPORT_GATEWAY=http://127.0.0.1:9091 jobreport check
    """
    _setup_logging()
    from jobreport.checks import FAIL, run_checks

    errors: list[ConfigError] = []
    try:
        config = config_from(params)
    except ConfigError as e:
        errors.append(e)
        logger = logging.getLogger("jobreport")
        level = logger.level
        logger.setLevel(logging.ERROR)  # the problem is reported below, not as a warning
        config = config_from(params, strict=False)
        logger.setLevel(level)
    report = run_checks(config, config_errors=errors)
    section = None
    for item in report.checks:
        if item.section != section:
            section = item.section
            click.echo(f"{section}:")
        mark = {"ok": "ok  ", "info": "    ", "warn": "WARN", FAIL: "FAIL"}[item.status]
        click.echo(f"  {mark} {item.name}: {item.detail}")
    if not report.ok:
        click.echo("problems found", err=True)
        sys.exit(EXIT_PROBLEM)


@main.command(epilog=EXIT_CODES_HELP)
@opt("--job", "jobs", envvar="JOBREPORT_RULES_JOB", multiple=True, metavar="NAME",
     help="Write a guard for this job (repeatable) [default: every job of the config file].")
@settings_options(instance=False)
@_library_errors
def rules(**params: Any) -> None:
    """Print Prometheus alerting rules with an absent() guard per configured job.

    The guard fires when Prometheus has no data for a job at all (it never reported, its
    group was deleted, or the Pushgateway lost its data). Jobs come from the [jobs.NAME]
    sections of the config file. The output passes `promtool check rules`.

    \b
    Example:
      jobreport rules > /etc/prometheus/rules/jobreport-absent.yml
    """
    _setup_logging()
    from jobreport.monitoring.rules import absent_rules

    config = config_from(params)
    jobs = list(params["jobs"]) or None
    if jobs is None and not config.jobs:
        click.echo("jobreport: no [jobs.NAME] sections in the config file "
                   f"({config.config_file or 'none found'}); the rules file is empty",
                   err=True)
    click.echo(absent_rules(config, jobs), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
