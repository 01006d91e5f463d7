"""The command line's option types and the options several commands share (click).

Every option reads an environment variable and names it in ``--help``. Options of ``jobreport
run`` are lenient about their variables: a bad value there is a warning and the default, so
that a broken setting never stops the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from jobreport.durations import parse_duration

if TYPE_CHECKING:
    from jobreport.config import Config

__all__ = [
    "DURATION", "LABELS", "LenientOption", "config_from", "json_option", "label_option",
    "opt", "run_opt", "settings_options", "typed_labels",
]

F = TypeVar("F", bound=Callable[..., Any])


# --- parameter types --------------------------------------------------------------------


if TYPE_CHECKING:
    _FloatParam = click.ParamType[float, Any]
    _LabelsParam = click.ParamType[dict[str, str], Any]
else:  # click before 8.3 has no type parameters
    _FloatParam = _LabelsParam = click.ParamType


class Duration(_FloatParam):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Labels(_LabelsParam):
    """``k=v`` (an environment variable may hold ``k=v,k2=v2``)."""

    name = "k=v"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        from jobreport.config import parse_labels

        try:
            return parse_labels(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = Duration()
LABELS = Labels()


class LenientOption(click.Option):
    """For ``jobreport run``: a bad value in the environment variable is a warning and the
    option's default is used, since a broken setting must not stop the job. A bad value
    typed on the command line is still a usage error."""

    warn = True

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        raw = super().resolve_envvar_value(ctx)
        if raw is None or self.multiple:
            return raw
        try:
            self.type.convert(raw, self, ctx)
        except click.BadParameter as e:
            if self.warn:
                names = [self.envvar] if isinstance(self.envvar, str) else list(
                    self.envvar or ())
                name = next((n for n in names if os.environ.get(n)), "the environment")
                click.echo(f"jobreport: ignoring {name}={raw!r}: {e.message.rstrip('.')}; "
                           "using the default", err=True)
            return None
        return raw


class SettingOption(LenientOption):
    """A lenient option whose variable the config reads too (and warns about itself)."""

    warn = False


def merge_labels(items: Iterable[dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for item in items:
        merged.update(item)
    return merged


# --- options shared by several commands -------------------------------------------------


def opt(*names: str, envvar: str | Sequence[str], **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def run_opt(*names: str, envvar: str | Sequence[str], **kwargs: Any) -> Callable[[F], F]:
    """An option of ``jobreport run``: see ``LenientOption``."""
    return opt(*names, envvar=envvar, cls=LenientOption, **kwargs)


def settings_options(*, instance: bool = True, lenient: bool = False) -> Callable[[F], F]:
    """--gateway, --db, --config (and --instance/--no-instance): the settings every command
    shares with the library, read from the same environment variables."""

    def decorate(func: F) -> F:
        options = [
            opt("--gateway", envvar=["JOBREPORT_GATEWAY", "PUSHGATEWAY_URL"], metavar="URL",
                help="Pushgateway URL, e.g. http://127.0.0.1:9091."),
            opt("--db", envvar="JOBREPORT_DB", metavar="URL",
                help="Store: an SQLAlchemy URL or an SQLite file path "
                      "[default: $XDG_STATE_HOME/jobreport/jobreport.db]."),
            opt("--config", "config_file", envvar="JOBREPORT_CONFIG", metavar="FILE",
                help="Config file [default: $XDG_CONFIG_HOME/jobreport/jobreport.toml, "
                      "else /etc/jobreport/jobreport.toml]."),
        ]
        if instance:
            options += [
                opt("--instance", envvar="JOBREPORT_INSTANCE", metavar="NAME",
                    help="The instance grouping label [default: the host name]."),
                opt("--no-instance", is_flag=True, envvar="JOBREPORT_NO_INSTANCE",
                    cls=SettingOption if lenient else click.Option,
                    help="Leave the instance label out of the group."),
            ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


_SETTINGS = ("gateway", "db", "config_file", "instance", "no_instance")


def config_from(params: dict[str, Any], *, strict: bool = True) -> Config:
    """The settings, with only what was typed on the command line as flags: values from the
    environment are left to load_config, so that `jobreport check` names their source."""
    from jobreport.config import load_config

    ctx = click.get_current_context()
    overrides = {
        name: params[name] for name in _SETTINGS
        if params.get(name) not in (None, False)
        and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    return load_config(strict=strict, **overrides)


def typed_labels(params: dict[str, Any]) -> dict[str, str]:
    """--label values typed on the command line, checked. JOBREPORT_LABELS is left to the
    config, which names its source on error (and for `run` only warns: the job runs)."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("labels") is not ParameterSource.COMMANDLINE:
        return {}
    param = next(p for p in ctx.command.params if p.name == "labels")
    return merge_labels(LABELS.convert(v, param, ctx) for v in params.get("labels") or ())


def label_option(help_text: str) -> Callable[[F], F]:
    return opt("--label", "labels", envvar="JOBREPORT_LABELS", multiple=True,
               metavar="K=V", help=help_text)


def json_option() -> Callable[[F], F]:
    return opt("--json", "as_json", is_flag=True, envvar="JOBREPORT_JSON",
               help="Print JSON instead of a table.")
