"""certctl_localca: a certificate authority in one process, behind the IssuerPort.

The embedded default connector (type ``localca``) and the reference implementation for
connector authors. Read in this order: :mod:`certctl_localca.plugin` (registration),
``_connector`` (the port), ``_config``, ``_pki`` (certificates), ``_ledger`` (SQLite),
``_crl`` (hand-encoded DER). OCSP responses and the DER writer are shared with other
hosts in :mod:`certctl_core.revocation`.
"""

from __future__ import annotations

from certctl_localca._config import PASSWORD_ENV, LocalCAConfig, UsageProfile
from certctl_localca._connector import CAPABILITIES, LocalCAIssuer, build_localca_issuer

__all__ = [
    "CAPABILITIES",
    "PASSWORD_ENV",
    "LocalCAIssuer",
    "LocalCAConfig",
    "UsageProfile",
    "build_localca_issuer",
]
