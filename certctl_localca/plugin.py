"""The ``localca`` plugin: registers the connector type and its contract-test harness.

Entry point ``localca = "certctl_localca.plugin"`` in the ``certctl.connectors`` group.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certctl_core import ConnectorRegistrar, ConnectorType, HarnessRegistrar, hookimpl
from certctl_localca._connector import CAPABILITIES, build_localca_issuer

if TYPE_CHECKING:
    from certctl_contracts.harness import LiveIssuer

__all__ = ["CONNECTOR_TYPE", "certctl_register_connectors", "certctl_register_harnesses", "harness"]

__version__ = "0.1.0"

CONNECTOR_TYPE = ConnectorType(
    name="localca",
    factory=build_localca_issuer,
    version=__version__,
    description="A certificate authority in this process: issues certificates and signs "
    "CRLs and OCSP responses from a local state directory",
    capabilities=CAPABILITIES,
    secret_fields=frozenset({"key_password"}),
    single_process=True,
    file_fields=frozenset({"key_password_file", "ca_cert_file", "ca_key_file"}),
    secret_scope=frozenset({"state_dir", "ca_cert_file", "ca_key_file"}),
)

#: The default lifetime the harness's connector gives (its ``validity_days``).
HARNESS_VALIDITY = dt.timedelta(days=90)


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(CONNECTOR_TYPE)


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    registrar.add("localca", harness)


def harness(tmp_path: Path) -> AbstractAsyncContextManager[LiveIssuer]:
    """A live local CA on a fresh state directory under ``tmp_path``, closed on exit."""
    return _harness(tmp_path)


@asynccontextmanager
async def _harness(tmp_path: Path) -> AsyncIterator[LiveIssuer]:
    from certctl_contracts.harness import LiveIssuer  # only the test suite needs it

    password = secrets.token_urlsafe(24)
    config = {
        "state_dir": str(tmp_path / "localca-state"),
        "key_password": password,
        "validity_days": HARNESS_VALIDITY.days,
    }
    issuer = await build_localca_issuer("localca-contract", config)
    try:
        chain = await issuer.ca_chain()
        yield LiveIssuer(
            issuer,
            trust_anchors=(chain[-1],),
            secrets=(password,),
            default_validity=HARNESS_VALIDITY,
        )
    finally:
        await issuer.close()
