"""The plugin module named by the ``certctl.connectors`` entry point.

``certctl_register_connectors`` offers the connector type; ``certctl_register_harnesses``
offers a contract-test harness, so that certctl's runner can test this adapter too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certctl_core import Capabilities, ConnectorType, hookimpl
from certctl_example.issuer import ExampleIssuer, build_example_issuer

if TYPE_CHECKING:
    from certctl_contracts import LiveIssuer
    from certctl_core import ConnectorRegistrar, HarnessRegistrar

#: The token the harness configures: long and unique, so that a leak cannot hide.
HARNESS_TOKEN = "example-token-0d5e8c2b9f6a4137"  # noqa: S105 - test-only token


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(
        ConnectorType(
            name="example",
            factory=build_example_issuer,
            version="0.1.0",
            description="example in-process CA",
            capabilities=Capabilities(status=True),
        )
    )


@asynccontextmanager
async def example_harness(tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    """A live ``example`` issuer for the contract suite; closed on exit."""
    from certctl_contracts import LiveIssuer  # only the test run needs the suite

    issuer = await build_example_issuer("example-under-test", {"api_token": HARNESS_TOKEN})
    assert isinstance(issuer, ExampleIssuer)
    try:
        yield LiveIssuer(
            issuer=issuer,
            trust_anchors=(issuer.root,),
            secrets=(HARNESS_TOKEN,),
            default_validity=dt.timedelta(days=1),
        )
    finally:
        await issuer.close()


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("example", example_harness)
