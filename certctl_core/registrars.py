"""What a plugin's hooks receive: registrars that collect connector types and harnesses.

Kept apart from :mod:`certctl_core.plugins` (which loads plugins) so that the hook specs
can name these types without an import circle: ``hookspecs`` and ``plugins`` both import
this module, which imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from certctl_core.errors import PluginError
from certctl_core.ports import ConnectorType

__all__ = ["BLOCKLIST_ENV", "ConnectorRegistrar", "HarnessRegistrar"]

#: Comma-separated entry-point or distribution names a host must not load.
BLOCKLIST_ENV = "CERTCTL_DISABLE_PLUGINS"


@attrs.define
class ConnectorRegistrar:
    """Collects the connector types one plugin registers (``certctl_register_connectors``)."""

    _plugin: str
    _taken: Mapping[str, str]  # type name -> plugin that registered it
    added: list[ConnectorType] = attrs.field(factory=list)

    def add(self, connector_type: ConnectorType) -> None:
        """Register a type; raises PluginError if another plugin already has the name."""
        name = connector_type.name
        owner = self._taken.get(name)
        if owner is not None or any(t.name == name for t in self.added):
            other = owner or self._plugin
            raise PluginError(
                f"connector type {name!r} is already registered by plugin {other!r}",
                entry_point=self._plugin,
                hint=f"uninstall one of the two, or block one with {BLOCKLIST_ENV}",
            )
        self.added.append(connector_type)


@attrs.define
class HarnessRegistrar:
    """Collects contract-test harness factories (``certctl_register_harnesses``).

    See ``certctl_contracts`` for what a harness factory returns.
    """

    harnesses: dict[str, Callable[..., Any]] = attrs.field(factory=dict)

    def add(self, name: str, factory: Callable[..., Any]) -> None:
        self.harnesses[name] = factory
