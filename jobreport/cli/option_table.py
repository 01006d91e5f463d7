"""The options of ``jobreport run`` and the settings options, declared once.

click's commands are built from these declarations (``jobreport.cli.options``), and so is the
fast parser that starts ``jobreport run``'s command without loading click
(``jobreport.cli.entry``). The options that set a field of the run's spec are made from
that field (``jobreport.spec.FIELDS``: flag, variable, help, kind and range). This module
imports only the standard library and the spec, and little of them: it is on the path of
every ``jobreport run`` before the command starts.
"""

from __future__ import annotations

from jobreport.durations import format_duration
from jobreport.spec import (
    CLI,
    COUNT,
    CRON,
    DURATION,
    FIELDS,
    FLAG,
    PATHS,
    RATIO,
    SIZE,
    ZONE,
    Field,
    parse_flag,
)

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COUNT", "CRON", "DURATION", "FLAG", "PATHS", "RUN_OPTIONS", "SETTINGS_OPTIONS", "TEXT",
    "ZONE", "OptionSpec", "convert", "parse_flag",
]

#: Kinds of value: text, and those of the spec's fields (an on/off flag, a duration, a
#: count, file paths (repeatable; ``:``-separated in the environment), a cron expression,
#: a time zone).
TEXT = "text"


class OptionSpec:
    """One option: its flags, the parameter name, the environment variable(s), the kind of
    value, the help text; ``field`` is the spec's field it sets (which converts the value
    and holds it to its range)."""

    __slots__ = ("default", "envvars", "field", "flags", "help", "kind", "metavar", "multiple",
                 "name", "show_default")

    def __init__(self, flags: tuple[str, ...], name: str, envvars: tuple[str, ...],
                 help: str, *, kind: str = TEXT, metavar: str | None = None,
                 default: str | int | None = None, multiple: bool = False,
                 show_default: bool = False, field: Field | None = None) -> None:
        self.flags = flags
        self.name = name
        self.envvars = envvars
        self.help = help
        self.kind = kind
        self.metavar = metavar
        self.default = default
        self.multiple = multiple or kind == PATHS
        self.show_default = show_default
        self.field = field

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


def convert(spec: OptionSpec, text: str) -> object:
    """The value of ``spec`` for ``text``; ValueError with the reason when it is not one."""
    if spec.field is not None and spec.kind != PATHS:  # (a path is itself: no range)
        return spec.field.convert(text)
    if spec.kind == FLAG:
        return parse_flag(text)
    return text


def _spec(*flags: str, name: str, envvar: str | tuple[str, ...], help: str,
          **kwargs: object) -> OptionSpec:
    envvars = (envvar,) if isinstance(envvar, str) else envvar
    return OptionSpec(flags, name, envvars, help, **kwargs)  # type: ignore[arg-type]


def _field_option(field: Field) -> OptionSpec:
    """The option of a field of the spec: its flag, variable, help (with its range)."""
    default: str | int | None = None
    if field.kind == DURATION and field.default is not None:
        default = format_duration(field.default)
    elif field.kind == COUNT and field.default is not None:
        default = field.default
    shown = field.help
    if field.kind in (DURATION, COUNT, SIZE, RATIO):
        shown = f"{field.help.rstrip('.')} [{field.range}]."
    return OptionSpec((field.flag,), field.name, (field.env,), shown, kind=field.kind,
                      metavar=field.metavar, default=default,
                      show_default=default is not None, field=field)


#: The options of ``jobreport run`` that are its own (the settings options follow them).
RUN_OPTIONS: tuple[OptionSpec, ...] = (
    _spec("--job", name="job", envvar="JOBREPORT_RUN_JOB", metavar="NAME",
          help="Job name [default: the command's base name]."),
    _spec("--label", name="labels", envvar="JOBREPORT_LABELS", multiple=True, metavar="K=V",
          help="Extra grouping label (repeatable)."),
    *(_field_option(f) for f in FIELDS if CLI in f.doors),
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
