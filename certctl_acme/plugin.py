"""The ACME plugin: registered under the ``certctl.connectors`` entry point."""

from __future__ import annotations

from certctl_acme import __version__
from certctl_acme.config import CONNECTOR_NAME
from certctl_acme.connector import build_acme_issuer
from certctl_core import Capabilities, ConnectorRegistrar, ConnectorType, hookimpl

__all__ = ["certctl_register_connectors"]


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(
        ConnectorType(
            name=CONNECTOR_NAME,
            factory=build_acme_issuer,
            version=__version__,
            description="ACME (RFC 8555): step-ca's ACME provisioner, Pebble, any ACME CA; "
            "http-01, dns-01, tls-alpn-01, EAB, ARI, profiles",
            # renewal_info only where the config keeps it on (a built connector may
            # offer fewer capabilities than its type).
            capabilities=Capabilities(renewal_info=True),
            secret_fields=frozenset({"account_key", "eab_hmac_key"}),
            file_fields=frozenset(
                {"account_key_file", "eab_hmac_key_file", "tls_root_path", "ca_chain_path"}
            ),
            secret_scope=frozenset(
                {"directory_url", "account_key_file", "eab_kid", "eab_hmac_key_file"}
            ),
            identity_fields=frozenset(),
        )
    )
