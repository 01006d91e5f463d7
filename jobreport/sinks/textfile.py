"""The textfile sink: node_exporter's textfile collector, one ``.prom`` file per group in a
directory.

The Prometheus documentation recommends the textfile collector for batch jobs that belong
to one machine (a backup of that host, its log rotation): node_exporter serves the file, and
its scrape target gives the ``instance`` label, so the file carries none. It does carry
``job`` and the other grouping labels on every sample; the scrape job of node_exporter needs
``honor_labels: true`` to keep that ``job`` (see docs/sinks.md).

A file is written atomically in its own directory (a temporary file there, fsync, rename,
fsync of the directory), so node_exporter never reads half a file; the temporary name does
not end in ``.prom``, so node_exporter never reads it at all. The file name is derived from
the group (its job, made safe, and a hash of the whole grouping key), never from a label
value as such: no value can name a path outside the directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from jobreport.errors import DeliveryError
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.sinks.base import Delivered, DeliveryResult, HoldsLocally, Probes, Rejected
from jobreport.state import GroupState, group_key

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["TextfileSink", "file_name", "merge", "render"]

SUFFIX = ".prom"
PREFIX = "jobreport-"
MODE = 0o644


def file_name(grouping: Mapping[str, str]) -> str:
    """The file of a group: ``jobreport-<job>-<hash>.prom``, the hash of the whole grouping
    key (``instance`` included: deleting or pruning another host's group of the same job,
    ``jobreport delete --instance old-host``, must not remove this host's file). Only
    ``[A-Za-z0-9_-]`` from the job name is kept."""
    key = group_key(grouping)
    job = re.sub(r"[^A-Za-z0-9_-]", "_", grouping.get("job", ""))[:64] or "_"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{PREFIX}{job}-{digest}{SUFFIX}"


def render(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> bytes:
    """``state`` in the text exposition format, every sample labelled with the group's
    labels except ``instance``; no timestamps."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    from jobreport.exposition import StateCollector

    group = {k: v for k, v in state.grouping.items() if k != "instance"}
    group["job"] = state.job

    class _Labelled(Collector):
        def collect(self) -> Iterator[Metric]:
            from prometheus_client.core import Metric

            for family in StateCollector(state, namespace).collect():
                out = Metric(family.name, family.documentation, family.type, family.unit)
                for s in family.samples:
                    if s.name.endswith("_created"):
                        continue
                    labels = dict(s.labels)
                    labels.pop("instance", None)
                    labels.update(group)
                    out.add_sample(s.name, labels, s.value)
                yield out

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled())
    return generate_latest(registry)


class TextfileSink(HoldsLocally, Probes):
    """Writes and removes group files in ``directory`` (a ``Sink``)."""

    name = "textfile"

    def __init__(self, directory: str | os.PathLike[str],
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        self.directory = Path(directory)
        self.namespace = namespace

    # --- the Sink protocol ------------------------------------------------------------------

    def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> DeliveryResult:
        """Replace the group's file with ``state``. Without the whole state (no store) the
        file would lose what only the store knows, so the known part is merged into the
        file's current families instead. (A local write: no deadline to keep.)"""
        try:
            self.write(state, keep=None if complete else self._current(state.grouping))
        except DeliveryError as e:
            return Rejected(str(e), None)
        return Delivered()

    def remove(self, grouping: Mapping[str, str], *, deadline: float) -> DeliveryResult:
        """Remove the group's file (``jobreport delete``, ``prune``)."""
        try:
            self.delete(grouping)
        except DeliveryError as e:
            return Rejected(str(e), None)
        return Delivered()

    # --- its capabilities -------------------------------------------------------------------

    def holds(self, grouping: Mapping[str, str]) -> bool:
        """Whether the group's file exists."""
        return self.path(grouping).exists()

    @property
    def where(self) -> str:
        return f"the textfile directory {self.directory}"

    def probe(self, *, deadline: float) -> str:
        """Whether a file can be written in the directory; raises ``DeliveryError``."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".jobreport-", suffix=".tmp")
        except OSError as e:
            raise self._error("cannot write in", e) from None
        os.close(fd)
        os.unlink(tmp)
        return f"{self.directory} is writable"

    def _current(self, grouping: Mapping[str, str]) -> str:
        try:
            return self.path(grouping).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def path(self, grouping: Mapping[str, str]) -> Path:
        """Where the file of ``grouping`` is."""
        return self.directory / file_name(grouping)

    def write(self, state: GroupState, *, keep: str | None = None) -> Path:
        """Replace the group's file with ``state`` (and the families of ``keep``, the old
        text, that ``state`` lacks); raises ``DeliveryError`` (not retryable: a full disk or a
        missing directory does not heal within a budget)."""
        body = render(state, self.namespace)
        if keep:
            body = merge(keep, body)
        target = self.path(state.grouping)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".jobreport-", suffix=".tmp")
        except OSError as e:
            raise self._error("cannot write in", e) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fchmod(f.fileno(), MODE)  # mkstemp makes it 0600: node_exporter may be
                os.fsync(f.fileno())         # another user
            os.replace(tmp, target)
            self._sync_directory()
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._error("cannot write in", e) from None
        return target

    def delete(self, grouping: Mapping[str, str]) -> bool:
        """Remove the group's file (a retired or pruned group); True when there was one."""
        try:
            self.path(grouping).unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._error("cannot remove a file in", e) from None
        self._sync_directory()
        return True

    def files(self) -> list[Path]:
        """The group files jobreport wrote in the directory."""
        try:
            return sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))
        except OSError:
            return []

    def _sync_directory(self) -> None:
        # the rename is durable only once the directory entry is on disk
        try:
            fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _error(self, what: str, e: OSError) -> DeliveryError:
        reason = e.strerror or type(e).__name__
        return DeliveryError(f"{what} the textfile directory {self.directory}: {reason} "
                         "(check JOBREPORT_TEXTFILE_DIR and its permissions)",
                         retryable=False)


def merge(current: str, new: bytes) -> bytes:
    """``new`` plus every family of ``current`` that ``new`` does not have: a run without
    the store knows only itself and must not remove what the file held (last success)."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector, CollectorRegistry

    try:
        fresh = list(text_string_to_metric_families(new.decode("utf-8")))
        names = {f.name for f in fresh}
        kept = [f for f in text_string_to_metric_families(current) if f.name not in names]
    except ValueError:  # a damaged file: the new state alone
        return new

    class _Merged(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from fresh
            yield from kept

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
