"""The certctl contract suite, run against the example connector.

This is all a connector author writes: subclass IssuerContract, override ``live_issuer``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from certctl_example.plugin import example_harness

from certctl_contracts import IssuerContract, LiveIssuer


class TestExampleIssuer(IssuerContract):
    @pytest.fixture
    async def live_issuer(self, tmp_path: Path) -> AsyncIterator[LiveIssuer]:
        async with example_harness(tmp_path) as live:
            yield live
