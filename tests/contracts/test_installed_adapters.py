"""Run the contract suite against every installed adapter that provides a harness.

Harnesses come from the ``certctl_register_harnesses`` hook of every plugin installed
under the ``certctl.connectors`` entry-point group (``PluginHost.discover()``, which
honours ``CERTCTL_DISABLE_PLUGINS``). Each test of the suite runs once per harness; the
test id names it (``test_...[stepca]``). A harness this repository ships but that is not
discovered is a failure, never a skip: see :data:`EXPECTED_HARNESSES`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from certctl_contracts import IssuerContract, LiveIssuer
from certctl_core.host import PluginHost

#: Harness names this repository's own plugins must provide. The runner fails while any
#: is missing. Adjust it when a plugin (and its harness) is added to or removed from
#: the distribution.
EXPECTED_HARNESSES: frozenset[str] = frozenset({"stepca", "localca"})

#: Parameter used when no harness at all is discovered, so the suite fails instead of
#: being skipped for an empty parameter set.
_NONE_DISCOVERED = "no-harness-discovered"


@functools.cache
def _host() -> PluginHost:
    return PluginHost.discover()


@functools.cache
def discovered_harnesses() -> dict[str, Callable[..., Any]]:
    """Harness factories of the installed plugins, by name."""
    return _host().harnesses()


def _plugin_report() -> str:
    host = _host()
    failures = "; ".join(f.as_error().message for f in host.failures) or "none"
    return (
        f"discovered harnesses: {sorted(discovered_harnesses()) or 'none'}; "
        f"connector types: {sorted(host.connector_types) or 'none'}; "
        f"blocked plugins: {host.blocked or 'none'}; plugin failures: {failures}"
    )


def test_every_expected_harness_is_discovered() -> None:
    missing = EXPECTED_HARNESSES - set(discovered_harnesses())
    assert not missing, (
        f"expected contract harnesses {sorted(missing)} were not discovered through "
        f"certctl_register_harnesses ({_plugin_report()})"
    )


class TestInstalledAdapter(IssuerContract):
    """The whole contract, once per discovered harness."""

    @pytest.fixture(params=sorted(discovered_harnesses()) or [_NONE_DISCOVERED])
    async def live_issuer(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> AsyncIterator[LiveIssuer]:
        name: str = request.param
        if name == _NONE_DISCOVERED:
            pytest.fail(f"no installed plugin provides a contract harness ({_plugin_report()})")
        async with discovered_harnesses()[name](tmp_path) as live:
            yield live
