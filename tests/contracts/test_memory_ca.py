"""The contract suite against the in-memory reference adapter, loaded as a plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certctl_contracts import IssuerContract, LiveIssuer
from certctl_core.host import PluginHost
from tests.contracts import memory_ca


class TestMemoryCA(IssuerContract):
    @pytest.fixture
    async def live_issuer(self, tmp_path: Path) -> AsyncIterator[LiveIssuer]:
        # Through the documented hook, as the runner for installed adapters does.
        harness = PluginHost.from_plugins({"memory": memory_ca}).harnesses()["memory"]
        async with harness(tmp_path) as live:
            yield live
