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

from jobreport.cli.option_table import (
    FLAG,
    PATHS,
    SETTINGS_OPTIONS,
    TEXT,
    OptionSpec,
    convert,
)
from jobreport.durations import parse_duration

if TYPE_CHECKING:
    from jobreport.config import Config

__all__ = [
    "ALL_SETTINGS", "DURATION", "LABELS", "EnvOption", "LenientOption", "SpecType",
    "config_from", "job_names", "json_option", "label_option", "opt", "run_opt", "settings_options",
    "spec_option", "typed_labels", "typed_settings",
]

F = TypeVar("F", bound=Callable[..., Any])


# --- parameter types --------------------------------------------------------------------


if TYPE_CHECKING:
    _ObjectParam = click.ParamType[Any, Any]
    _LabelsParam = click.ParamType[dict[str, str], Any]
else:  # click before 8.3 has no type parameters
    _ObjectParam = _LabelsParam = click.ParamType


class SpecType(_ObjectParam):
    """The value of one declared option (``option_table.convert``): the fast parser of
    ``jobreport run`` and click accept and refuse the same values, with the same reason."""

    def __init__(self, spec: OptionSpec) -> None:
        self.spec = spec
        self.name = spec.kind

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return convert(self.spec, value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Duration(_ObjectParam):
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


class EnvOption(click.Option):
    """An option that reads an environment variable and names it in ``--help``; an error
    names the variable only when the value came from it (not after a typed flag)."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        hint = " / ".join(f"'{x}'" for x in self.opts)
        source = ctx.get_parameter_source(self.name) if ctx and self.name else None
        if source is ParameterSource.ENVIRONMENT:
            var = next((v for v in _envvars(self) if os.environ.get(v)), None)
            if var:
                hint += f" (from {var})"
        return hint


def _envvars(option: click.Parameter) -> list[str]:
    return [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or ())


class LenientOption(EnvOption):
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
                name = next((n for n in _envvars(self) if os.environ.get(n)),
                            "the environment")
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


# --- options built from their declarations ----------------------------------------------


def opt(*names: str, envvar: str | Sequence[str], **kwargs: Any) -> Callable[[F], F]:
    """A click option reading ``envvar`` and naming it in ``--help``."""
    kwargs.setdefault("cls", EnvOption)
    return click.option(*names, envvar=envvar, show_envvar=True, **kwargs)


def spec_option(spec: OptionSpec, cls: type[click.Option] = EnvOption) -> Callable[[F], F]:
    """The click option of one declaration of ``option_table``."""
    kwargs: dict[str, Any] = {"cls": cls, "help": spec.help, "multiple": spec.multiple}
    if spec.kind == FLAG:
        kwargs["is_flag"] = True
    else:
        kwargs["metavar"] = spec.metavar
        if spec.kind == PATHS:
            kwargs["type"] = click.Path()
        elif spec.kind != TEXT:
            kwargs["type"] = SpecType(spec)
    if spec.default is not None:
        kwargs.update(default=spec.default, show_default=spec.show_default)
    envvar = spec.envvars[0] if len(spec.envvars) == 1 else list(spec.envvars)
    return opt(*spec.flags, spec.name, envvar=envvar, **kwargs)


def run_opt(*names: str, envvar: str | Sequence[str], **kwargs: Any) -> Callable[[F], F]:
    """An option of ``jobreport run``: see ``LenientOption``."""
    return opt(*names, envvar=envvar, cls=LenientOption, **kwargs)


#: Which settings options a command shows: the ones it uses.
ALL_SETTINGS = tuple(s.name for s in SETTINGS_OPTIONS)


def settings_options(*, use: Sequence[str] = ALL_SETTINGS,
                     lenient: bool = False) -> Callable[[F], F]:
    """The settings options a command uses (``use``: names from ``ALL_SETTINGS``): the
    settings every command shares with the library, read from the same environment
    variables."""

    def decorate(func: F) -> F:
        for spec in reversed([s for s in SETTINGS_OPTIONS if s.name in use]):
            cls = SettingOption if lenient and spec.kind == FLAG else EnvOption
            func = spec_option(spec, cls)(func)
        return func

    return decorate


def typed_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The settings typed on the command line as flags: values from the environment are
    left to load_config, so that `jobreport check` names their source."""
    ctx = click.get_current_context()
    return {
        name: params[name] for name in ALL_SETTINGS
        if params.get(name) not in (None, False)
        and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


def config_from(params: dict[str, Any], *, strict: bool = True) -> Config:
    """The settings, with only what was typed on the command line as flags."""
    from jobreport.config import load_config

    return load_config(strict=strict, **typed_settings(params))


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


def job_names(ctx: click.Context, param: click.Parameter,
              value: tuple[str, ...]) -> tuple[str, ...]:
    """A click callback: every ``--job`` given is a valid job name, else a usage error."""
    from jobreport.errors import InvalidNameError
    from jobreport.names import check_job

    try:
        return tuple(check_job(job) for job in value)
    except InvalidNameError as e:
        raise click.BadParameter(str(e), ctx, param) from None
