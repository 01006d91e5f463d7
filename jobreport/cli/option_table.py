"""The options of ``jobreport run`` and the settings options, declared once.

click's commands are built from these declarations (``jobreport.cli.options``), and so is the
fast parser that starts ``jobreport run``'s command without loading click
(``jobreport.cli.entry``). This module imports only the standard library, and little of it:
it is on the path of every ``jobreport run`` before the command starts.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COUNT", "DURATION", "FAILURES", "FLAG", "PATHS", "RUN_OPTIONS", "SCHEDULE",
    "SETTINGS_OPTIONS", "TEXT", "ZONE", "OptionSpec", "convert", "parse_flag",
]

#: Kinds of value: text, an on/off flag, a duration, a count (integer >= 0), file paths
#: (repeatable; ``:``-separated in the environment).
TEXT = "text"
FLAG = "flag"
DURATION = "duration"
COUNT = "count"
PATHS = "paths"
#: Schedules (jobreport.schedule, which checks them without loading cronsim): a cron
#: expression, an IANA time zone, a number of failures in a row (1 or more).
SCHEDULE = "schedule"
ZONE = "zone"
FAILURES = "failures"

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class OptionSpec:
    """One option: its flags, the parameter name, the environment variable(s), the kind of
    value, the help text; ``setting`` names the duration rule of ``durations.POSITIVE``
    (zero refused) and is the name the value has in ``RunRequest``."""

    __slots__ = ("default", "envvars", "flags", "help", "kind", "metavar", "multiple",
                 "name", "setting", "show_default")

    def __init__(self, flags: tuple[str, ...], name: str, envvars: tuple[str, ...],
                 help: str, *, kind: str = TEXT, metavar: str | None = None,
                 default: str | int | None = None, multiple: bool = False,
                 show_default: bool = False, setting: str | None = None) -> None:
        self.flags = flags
        self.name = name
        self.envvars = envvars
        self.help = help
        self.kind = kind
        self.metavar = metavar
        self.default = default
        self.multiple = multiple or kind == PATHS
        self.show_default = show_default
        self.setting = setting

    def __repr__(self) -> str:
        return f"OptionSpec({self.flags[0]})"

    def env_value(self, environ: Mapping[str, str]) -> tuple[str, str] | None:
        """(variable, raw value) of the first of ``envvars`` that is set and not empty, as
        click reads it."""
        for var in self.envvars:
            raw = environ.get(var)
            if raw:
                return var, raw
        return None


def parse_flag(text: str) -> bool:
    """An on/off value as click reads it (``1``/``true``/``yes``/``on``...); ValueError if
    it is neither."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a valid boolean")


def convert(spec: OptionSpec, text: str) -> object:
    """The value of ``spec`` for ``text``; ValueError with the reason when it is not one."""
    if spec.kind == DURATION:
        from jobreport.durations import parse_duration

        return parse_duration(text, spec.setting)
    if spec.kind == COUNT:
        if not (text.isascii() and text.strip().isdigit()):
            raise ValueError(f"{text!r} is not a whole number of 0 or more")
        return int(text)
    if spec.kind == FLAG:
        return parse_flag(text)
    if spec.kind in (SCHEDULE, ZONE, FAILURES):
        from jobreport.config.values import failure_count, schedule_expression, time_zone

        return {SCHEDULE: schedule_expression, ZONE: time_zone,
                FAILURES: failure_count}[spec.kind](text)
    return text


def _spec(*flags: str, name: str, envvar: str | tuple[str, ...], help: str,
          **kwargs: object) -> OptionSpec:
    envvars = (envvar,) if isinstance(envvar, str) else envvar
    return OptionSpec(flags, name, envvars, help, **kwargs)  # type: ignore[arg-type]


#: The options of ``jobreport run`` that are its own (the settings options follow them).
RUN_OPTIONS: tuple[OptionSpec, ...] = (
    _spec("--job", name="job", envvar="JOBREPORT_RUN_JOB", metavar="NAME",
          help="Job name [default: the command's base name]."),
    _spec("--label", name="labels", envvar="JOBREPORT_LABELS", multiple=True, metavar="K=V",
          help="Extra grouping label (repeatable)."),
    _spec("--expect-every", name="expect_every", envvar="JOBREPORT_EXPECT_EVERY",
          kind=DURATION, metavar="DURATION", setting="expect_every",
          help="The job should succeed this often, e.g. 24h (overdue after this plus "
               "--grace)."),
    _spec("--grace", name="grace", envvar="JOBREPORT_GRACE", kind=DURATION,
          metavar="DURATION",
          help="Slack after --expect-every before the job is overdue [default: 10% of it]; "
               "with --schedule, after each fire time [default: 10% of the gap]."),
    _spec("--max-runtime", name="max_runtime", envvar="JOBREPORT_MAX_RUNTIME", kind=DURATION,
          metavar="DURATION", setting="max_runtime",
          help="A run is stuck after this long (pushed for the alert; nothing is killed)."),
    _spec("--schedule", name="schedule", envvar="JOBREPORT_SCHEDULE", kind=SCHEDULE,
          metavar="CRON",
          help='When the job runs: five cron fields ("0 3 * * 1-5") or @hourly, @daily, '
               "@weekly, @monthly; pushes start and success deadlines instead of an "
               "interval (not with --expect-every)."),
    _spec("--timezone", name="timezone", envvar="JOBREPORT_TIMEZONE", kind=ZONE,
          metavar="ZONE",
          help="IANA time zone of --schedule, e.g. Europe/Berlin [default: the host's]."),
    _spec("--min-runtime", name="min_runtime", envvar="JOBREPORT_MIN_RUNTIME", kind=DURATION,
          metavar="DURATION",
          help="A successful run shorter than this is suspicious (the too-short alert)."),
    _spec("--alert-after-failures", name="alert_after_failures",
          envvar="JOBREPORT_ALERT_AFTER_FAILURES", kind=FAILURES, metavar="N",
          help="The failed alert waits for N unsuccessful runs in a row [default: 1]."),
    _spec("--heartbeat", name="heartbeat", envvar="JOBREPORT_HEARTBEAT", kind=DURATION,
          metavar="DURATION", setting="heartbeat",
          help="Push a liveness timestamp this often while the command runs."),
    _spec("--timeout", name="timeout", envvar="JOBREPORT_RUN_TIMEOUT", kind=DURATION,
          metavar="DURATION", setting="timeout",
          help="Stop the command's whole process tree after this long (exit code 124)."),
    _spec("--kill-after", name="kill_after", envvar="JOBREPORT_KILL_AFTER", kind=DURATION,
          metavar="DURATION", default="10s", show_default=True,
          help="After the timeout's SIGTERM, SIGKILL whatever still runs after this long."),
    _spec("--size-path", name="size_paths", envvar="JOBREPORT_SIZE_PATH", kind=PATHS,
          metavar="PATH",
          help="Report the bytes of this file or directory tree after the run as "
               "jobreport_last_size_bytes (repeatable; in the environment, separate with "
               "':')."),
    _spec("--lock", name="lock", envvar="JOBREPORT_LOCK", kind=FLAG,
          help="Do not start while another run of this job (same group) runs on this host: "
               "record outcome skipped and exit 75."),
    _spec("--tail", name="tail_lines", envvar="JOBREPORT_TAIL", kind=COUNT, metavar="N",
          default=20, show_default=True,
          help="Keep this many last lines of output in the history (only when the output is "
               "not a terminal; 0: none)."),
    _spec("--quiet", "-q", name="quiet", envvar="JOBREPORT_QUIET", kind=FLAG,
          help="Print no warnings of jobreport's own (errors still show)."),
)

#: The settings every command may share with the library (``Config``), read from the same
#: environment variables as ``load_config`` reads; only a value typed on the command line
#: is passed on as an override (``config_from``).
SETTINGS_OPTIONS: tuple[OptionSpec, ...] = (
    _spec("--gateway", name="gateway", envvar=("JOBREPORT_GATEWAY", "PUSHGATEWAY_URL"),
          metavar="URL", help="Pushgateway URL, e.g. http://127.0.0.1:9091."),
    _spec("--db", name="db", envvar="JOBREPORT_DB", metavar="URL",
          help="Store: an SQLAlchemy URL or an SQLite file path "
               "[default: $XDG_STATE_HOME/jobreport/jobreport.db]."),
    _spec("--config", name="config_file", envvar="JOBREPORT_CONFIG", metavar="FILE",
          help="Config file [default: $XDG_CONFIG_HOME/jobreport/jobreport.toml, "
               "else /etc/jobreport/jobreport.toml]."),
    _spec("--instance", name="instance", envvar="JOBREPORT_INSTANCE", metavar="NAME",
          help="The instance grouping label [default: the host name]."),
    _spec("--no-instance", name="no_instance", envvar="JOBREPORT_NO_INSTANCE", kind=FLAG,
          help="Leave the instance label out of the group."),
    _spec("--remote-write", name="remote_write_url", envvar="JOBREPORT_REMOTE_WRITE_URL",
          metavar="URL", help="Also deliver by Prometheus remote write 1.0 to this receiver, "
                              "e.g. http://127.0.0.1:8428/api/v1/write."),
    _spec("--textfile-dir", name="textfile_dir", envvar="JOBREPORT_TEXTFILE_DIR",
          metavar="DIR", help="Also write one file per group here for node_exporter's "
                              "textfile collector."),
)
