"""The shared issuer contract suite, run against the local CA's own harness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from certctl_contracts import IssuerContract, LiveIssuer
from certctl_localca.plugin import harness


class TestLocalCAContract(IssuerContract):
    """Every contract test, on a fresh local CA per test."""

    @pytest.fixture
    async def live_issuer(self, tmp_path: Path) -> AsyncIterator[LiveIssuer]:
        async with harness(tmp_path) as live:
            yield live
