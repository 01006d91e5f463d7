"""``jobreport run``: run a command as one run of a job and report it."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from jobreport.cli.app import EXIT_CODES_HELP, cli, setup_logging
from jobreport.cli.options import (
    DURATION,
    config_from,
    label_option,
    opt,
    run_opt,
    settings_options,
    typed_labels,
)
from jobreport.errors import InvalidNameError

__all__ = ["run"]


@cli.command(
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
    setup_logging(params["quiet"])
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
