"""The ACME plugin: registered under the ``certctl.connectors`` entry point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certctl_acme import __version__
from certctl_acme.config import CONNECTOR_NAME
from certctl_acme.connector import build_acme_issuer
from certctl_core import Capabilities, ConnectorRegistrar, ConnectorType, hookimpl

__all__ = ["ENV", "SEED_ISSUER_ID", "certctl_register_connectors", "env_seed"]

#: The issuer certctl-server creates from ``CERTCTL_ACME_*`` on an empty store.
SEED_ISSUER_ID = "iss-acme"
#: config key -> the environment variable env_seed reads it from.
ENV = {
    "directory_url": "CERTCTL_ACME_DIRECTORY_URL",
    "tls_root_path": "CERTCTL_ACME_TLS_ROOT",
    "account_key_file": "CERTCTL_ACME_ACCOUNT_KEY_FILE",
    "contact": "CERTCTL_ACME_CONTACT",
    "terms_of_service_agreed": "CERTCTL_ACME_TOS_AGREED",
    "eab_kid": "CERTCTL_ACME_EAB_KID",
    "eab_hmac_key": "CERTCTL_ACME_EAB_HMAC_KEY",
    "challenge": "CERTCTL_ACME_CHALLENGE",
    "http_address": "CERTCTL_ACME_HTTP_ADDRESS",
    "dns_hook": "CERTCTL_ACME_DNS_HOOK",
}


def env_seed(environ: Mapping[str, str]) -> tuple[str, Mapping[str, Any]] | None:
    """``iss-acme`` from ``CERTCTL_ACME_*`` when ``CERTCTL_ACME_DIRECTORY_URL`` is set; the
    host validates it by building it, as for a PUT (secrets sealed at rest)."""
    config = {key: (environ.get(name) or "").strip() for key, name in ENV.items()}
    if not config["directory_url"]:
        return None
    return SEED_ISSUER_ID, {key: value for key, value in config.items() if value}


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
            env_seed=env_seed,
        )
    )
