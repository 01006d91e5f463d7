"""The resolved settings: a frozen ``Config`` (with the jobs' sections of the config file,
each a ``JobSpec``), the ``SinkSettings`` the sinks are made from, plus the default store."""

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from jobreport.names import DEFAULT_NAMESPACE
from jobreport.paths import state_dir
from jobreport.spec import JobSpec

__all__ = ["Config", "SinkSettings", "default_db_url"]


#: Never shown by a settings record's repr.
_SECRET = frozenset({"password", "token"})
#: The default of a mapping field: empty and read-only, so no record can change another's.
_NONE: Mapping[str, Any] = MappingProxyType({})


def _masked_repr(record: tuple[Any, ...], names: tuple[str, ...]) -> str:
    """A settings record's repr without its secrets (a repr ends up in logs and tracebacks)."""
    shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, record, strict=True)
                      if n not in _SECRET)
    return f"{type(record).__name__}({shown})"


# The settings are NamedTuples, not frozen dataclasses: made by every run, and
# ``dataclasses`` (with the ``inspect`` it imports) cost a run about 6 ms.
class SinkSettings(NamedTuple):
    """The settings that pick the sinks and shape each of them (``Config.sinks``):
    ``jobreport.sinks.configured_sinks`` builds the sinks from these alone, and a process
    keeps the sinks it built per distinct value, so a setting added here can never hand
    back a stale sink. Each field is the ``Config`` field of the same name."""

    gateway: str | None = None
    remote_write_url: str | None = None
    textfile_dir: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    #: Seconds each socket operation of an attempt may take (``JOBREPORT_TIMEOUT``).
    timeout: float = 5.0
    username: str | None = None
    password: str | None = None
    token: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    #: The store's URL: the memory of unreachable peers lives beside an SQLite store.
    db: str = ""

    def __repr__(self) -> str:
        return _masked_repr(self, self._fields)


class Config(NamedTuple):
    """Everything jobreport needs to know, resolved once."""

    gateway: str | None = None
    db: str = ""
    namespace: str = DEFAULT_NAMESPACE
    instance: str | None = None
    labels: Mapping[str, str] = _NONE
    timeout: float = 5.0
    budget: float = 10.0
    start_budget: float = 1.0
    username: str | None = None
    password: str | None = None
    token: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    #: Prometheus remote write 1.0 receiver (``JOBREPORT_REMOTE_WRITE_URL``).
    remote_write_url: str | None = None
    #: node_exporter textfile collector directory (``JOBREPORT_TEXTFILE_DIR``).
    textfile_dir: str | None = None
    #: What the store keeps of each group: runs younger than this many days, and its
    #: newest this many runs (0: no limit); the output tails of its newest 100 runs.
    keep_days: int = 400
    keep_runs: int = 10_000
    #: The ``[jobs.NAME]`` sections of the config file: what a run of the job is held to
    #: where its flags or ``job_metrics`` keywords say nothing (``JobSpec.over``).
    jobs: Mapping[str, JobSpec] = _NONE
    config_file: str | None = None
    #: Where each setting came from (``jobreport config``).
    sources: Mapping[str, str] = _NONE

    def __repr__(self) -> str:
        return _masked_repr(self, self._fields)

    def __reduce__(self) -> tuple[type["Config"], tuple[Any, ...]]:
        # pickle and deepcopy (a Config handed to another process): the read-only default
        # mapping goes as a plain dict, which they can copy
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in self)

    @property
    def sinks(self) -> SinkSettings:
        """The settings of the sinks, taken from the fields of the same names."""
        return SinkSettings(**{name: getattr(self, name) for name in SinkSettings._fields})

    def job(self, name: str) -> JobSpec:
        """The section of job ``name`` in the config file (an empty spec when it has none)."""
        return self.jobs.get(name) or JobSpec(name)

    def grouping(self, job: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
        """The grouping key of ``job``'s group: job, instance, then the extra labels."""
        key = {"job": job}
        if self.instance is not None:
            key["instance"] = self.instance
        key.update(self.labels)
        section = self.jobs.get(job)
        if section is not None:
            key.update(section.labels)
        key.update(labels or {})
        return key

    def with_overrides(self, **changes: Any) -> "Config":
        """A copy with some fields replaced (used by tests and the CLI)."""
        return self._replace(**changes)


def default_db_url(env: Mapping[str, str] | None = None) -> str:
    """The default store: SQLite under the XDG state directory."""
    return f"sqlite:///{os.path.join(state_dir(env), 'jobreport.db')}"
