"""certctl_acme: the ACME (RFC 8555) issuer connector, for step-ca's ACME provisioner,
Pebble, and any RFC 8555 CA. See docs/connectors/acme.md."""

from __future__ import annotations

from certctl_acme.config import CONNECTOR_NAME, AcmeConfig
from certctl_acme.connector import AcmeIssuer, build_acme_issuer, cert_id

__version__ = "0.1.0"

__all__ = [
    "CONNECTOR_NAME",
    "AcmeConfig",
    "AcmeIssuer",
    "__version__",
    "build_acme_issuer",
    "cert_id",
]
