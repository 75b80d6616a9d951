"""What a host needs to drive connectors: plugin discovery and the registry.

Connector authors do not need this module (their API is :mod:`certctl_core`'s top
level). A host (the ``certctl`` CLI, certctl-server, an embedding application) discovers
plugins with :class:`PluginHost` and builds, serves and hot-swaps issuers with
:class:`Registry`::

    from certctl_core.host import PluginHost, Registry

    async with Registry(PluginHost.discover()) as registry:
        await registry.build("corp", "stepca", config)
        issued = await registry.issue("corp", request)
"""

from __future__ import annotations

from certctl_core.plugins import ENTRY_POINT_GROUP, PluginFailure, PluginHost
from certctl_core.registrars import BLOCKLIST_ENV
from certctl_core.registry import IssuerInfo, PreparedIssuer, Registry

__all__ = [
    "BLOCKLIST_ENV",
    "ENTRY_POINT_GROUP",
    "IssuerInfo",
    "PluginFailure",
    "PluginHost",
    "PreparedIssuer",
    "Registry",
]
