"""A group's state in a prometheus_client registry, for tests that push through
prometheus_client's own API (jobreport itself writes its body with ``exposition.text``)."""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from jobreport.exposition import StateCollector
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.state import GroupState

__all__ = ["registry_for"]


def registry_for(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> CollectorRegistry:
    """A fresh registry (never the global default) holding ``state``'s families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, namespace))
    return registry
