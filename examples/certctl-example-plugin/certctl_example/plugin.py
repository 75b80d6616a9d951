"""The plugin module named by the ``certctl.connectors`` entry point.

``certctl_register_connectors`` offers the connector type; ``certctl_register_harnesses``
offers a contract-test harness, so that certctl's runner can test this adapter too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certctl_core import Capabilities, ConnectorType, RevocationReason, Secret, hookimpl
from certctl_example.issuer import ExampleBackend, ExampleIssuer, build_example_issuer

if TYPE_CHECKING:
    from certctl_contracts import LiveIssuer
    from certctl_core import ConnectorRegistrar, HarnessRegistrar, IssuerPort

#: The token the harness configures: long and unique, so that a leak cannot hide.
HARNESS_TOKEN = "example-token-0d5e8c2b9f6a4137"  # noqa: S105 - test-only token

CONNECTOR_TYPE = ConnectorType(
    name="example",
    factory=build_example_issuer,
    version="0.1.0",
    description="example in-process CA",
    capabilities=Capabilities(status=True),
    secret_fields=frozenset({"api_token"}),
)


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(CONNECTOR_TYPE)


class ExampleFaults:
    """The harness's faults: the backend (the "network" to the CA) misbehaves."""

    def __init__(self, backend: ExampleBackend) -> None:
        self.backend = backend

    @asynccontextmanager
    async def _down(self) -> AsyncIterator[None]:
        self.backend.down = True
        try:
            yield
        finally:
            self.backend.down = False

    def unreachable(self) -> AbstractAsyncContextManager[None]:
        return self._down()

    @asynccontextmanager
    async def _busy(self) -> AsyncIterator[None]:
        self.backend.busy_for = 1.0
        try:
            yield
        finally:
            self.backend.busy_for = None

    def erroring(self) -> AbstractAsyncContextManager[None]:
        return self._busy()

    @asynccontextmanager
    async def _slow(self, seconds: float) -> AsyncIterator[None]:
        self.backend.delay = seconds
        try:
            yield
        finally:
            self.backend.delay = 0.0

    def slow(self, seconds: float) -> AbstractAsyncContextManager[None]:
        return self._slow(seconds)


@asynccontextmanager
async def example_harness(tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    """A live ``example`` issuer for the contract suite; closed on exit."""
    from certctl_contracts import LiveIssuer  # only the test run needs the suite

    config = {"api_token": HARNESS_TOKEN}
    issuer = await build_example_issuer("example-under-test", config)
    assert isinstance(issuer, ExampleIssuer)
    backend = issuer.backend  # the CA's state, read beside the connector
    built: list[IssuerPort] = [issuer]

    async def rebuild() -> IssuerPort:
        again = ExampleIssuer(
            "example-rebuilt",
            token=Secret(HARNESS_TOKEN),
            default_validity=dt.timedelta(days=1),
            backend=backend,
        )
        built.append(again)
        return again

    async def is_revoked(serial: int) -> RevocationReason | None:
        revoked = backend.revoked.get(serial)
        return None if revoked is None else revoked[1]

    try:
        yield LiveIssuer(
            issuer=issuer,
            root=backend.root,
            connector_type=CONNECTOR_TYPE,
            config=config,
            is_revoked=is_revoked,
            rebuild=rebuild,
            faults=ExampleFaults(backend),
            secrets=(HARNESS_TOKEN,),
            default_validity=dt.timedelta(days=1),
            lifetime_tolerance=dt.timedelta(seconds=31),
        )
    finally:
        for each in built:
            await each.close()


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("example", example_harness)
