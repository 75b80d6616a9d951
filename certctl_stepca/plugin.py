"""The step-ca plugin: registered under the ``certctl.connectors`` entry point like any other."""

from __future__ import annotations

from certctl_core import ConnectorRegistrar, ConnectorType, HarnessRegistrar, hookimpl
from certctl_stepca import __version__
from certctl_stepca.config import CONNECTOR_NAME
from certctl_stepca.connector import build_stepca_issuer

__all__ = ["certctl_register_connectors", "certctl_register_harnesses"]


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(
        ConnectorType(
            name=CONNECTOR_NAME,
            factory=build_stepca_issuer,
            version=__version__,
            description="Smallstep step-ca: /1.0/sign and /1.0/revoke with a JWK provisioner",
            secret_fields=frozenset({"provisioner_password"}),
        )
    )


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    from certctl_stepca.contract_harness import live_stepca_issuer

    registrar.add(CONNECTOR_NAME, live_stepca_issuer)
