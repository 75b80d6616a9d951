"""The step-ca plugin: registered under the ``certctl.connectors`` entry point like any other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certctl_core import Capabilities, ConnectorRegistrar, ConnectorType, HarnessRegistrar, hookimpl
from certctl_stepca import __version__
from certctl_stepca.config import CONNECTOR_NAME, ENV, ROOT_CERT_ENV
from certctl_stepca.connector import build_stepca_issuer

__all__ = [
    "SEED_ISSUER_ID",
    "certctl_register_connectors",
    "certctl_register_harnesses",
    "env_seed",
]

#: The issuer certctl-server (and ``certctl serve``) creates from ``CERTCTL_STEPCA_*``.
SEED_ISSUER_ID = "iss-stepca"


def env_seed(environ: Mapping[str, str]) -> tuple[str, Mapping[str, Any]] | None:
    """``iss-stepca`` from the environment certctl-server reads, when CERTCTL_STEPCA_URL is
    set: URL, provisioner, key path, password (or password file) and root. The host
    validates the config by building it, as for a PUT."""

    def get(name: str) -> str | None:
        value = (environ.get(name) or "").strip()
        return value or None

    url = get(ENV["ca_url"])
    if url is None:
        return None
    config: dict[str, Any] = {
        "ca_url": url,
        "provisioner_name": get(ENV["provisioner_name"]),
        "provisioner_key_path": get(ENV["provisioner_key_path"]),
        # Taken verbatim (a password may end in spaces); the host seals it at rest.
        "provisioner_password": environ.get(ENV["provisioner_password"]) or None,
        "provisioner_password_file": get(ENV["provisioner_password_file"]),
        "root_cert_path": get(ENV["root_cert_path"]) or get(ROOT_CERT_ENV),
        "root_fingerprint": get(ENV["root_fingerprint"]),
    }
    return SEED_ISSUER_ID, {k: v for k, v in config.items() if v is not None}


@hookimpl
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    registrar.add(
        ConnectorType(
            name=CONNECTOR_NAME,
            factory=build_stepca_issuer,
            version=__version__,
            description="Smallstep step-ca: /1.0/sign and /1.0/revoke with a JWK provisioner",
            # crl only with crl_enabled (step-ca >= 0.23 publishing one): a built connector
            # may offer fewer capabilities than its type, never more.
            capabilities=Capabilities(crl=True),
            secret_fields=frozenset({"provisioner_password"}),
            file_fields=frozenset(
                {"provisioner_key_path", "provisioner_password_file", "root_cert_path"}
            ),
            secret_scope=frozenset(
                {
                    "ca_url",
                    "provisioner_name",
                    "provisioner_key_path",
                    "root_cert_path",
                    "root_fingerprint",
                }
            ),
            config_checks={"duration_limits": "validity_days"},
            env_seed=env_seed,
        )
    )


@hookimpl
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    from certctl_stepca.contract_harness import live_stepca_issuer

    registrar.add(CONNECTOR_NAME, live_stepca_issuer)
