"""certctl_core: what a connector author imports.

Implement :class:`IssuerPort` (optionally through :class:`IssuerBase`), register a
:class:`ConnectorType` from a :data:`hookimpl` of ``certctl_register_connectors`` (it
receives a :class:`ConnectorRegistrar`), raise the errors of this package, and run the
contract suite (``certctl_contracts``) against the result. A connector that runs its
own CA builds the CA's certificates with :func:`build_ca_certificate` and signs with the digest
:func:`signature_hash` gives (both from :mod:`certctl_core.pki`).

Hosts (the CLI, certctl-server, an embedding application) import the plugin host and
the registry from :mod:`certctl_core.host`; revocation encoding shared by adapters is
in :mod:`certctl_core.revocation`.
"""

from __future__ import annotations

from certctl_core.base import IssuerBase
from certctl_core.config import ConfigReader
from certctl_core.domain import (
    Capabilities,
    CertificateRequest,
    CertificateStatus,
    HealthCheck,
    HealthReport,
    IssuedCertificate,
    Profile,
    RenewalWindow,
    Revocation,
    RevocationReason,
    Secret,
    SubjectAltNames,
    parse_serial,
)
from certctl_core.errors import (
    AuthenticationError,
    CATimeoutError,
    CAUnavailableError,
    CAUnreachableError,
    CertctlError,
    ConfigError,
    ConfigProblem,
    InvalidRequestError,
    InvalidResponseError,
    IssuerClosedError,
    NotFoundError,
    PermanentError,
    PluginError,
    PolicyViolationError,
    RejectedError,
    TransientError,
    UnknownConnectorTypeError,
    UnknownIssuerError,
    UnsupportedCapabilityError,
)
from certctl_core.hookspecs import hookimpl
from certctl_core.pki import build_ca_certificate, signature_hash
from certctl_core.ports import ConnectorFactory, ConnectorType, IssuerPort
from certctl_core.registrars import ConnectorRegistrar, HarnessRegistrar

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CATimeoutError",
    "CAUnavailableError",
    "CAUnreachableError",
    "Capabilities",
    "CertctlError",
    "CertificateRequest",
    "CertificateStatus",
    "ConfigError",
    "ConfigProblem",
    "ConfigReader",
    "ConnectorFactory",
    "ConnectorRegistrar",
    "ConnectorType",
    "HarnessRegistrar",
    "HealthCheck",
    "HealthReport",
    "InvalidRequestError",
    "InvalidResponseError",
    "IssuedCertificate",
    "IssuerBase",
    "IssuerClosedError",
    "IssuerPort",
    "NotFoundError",
    "PermanentError",
    "PluginError",
    "PolicyViolationError",
    "Profile",
    "RejectedError",
    "RenewalWindow",
    "Revocation",
    "RevocationReason",
    "Secret",
    "SubjectAltNames",
    "TransientError",
    "UnknownConnectorTypeError",
    "UnknownIssuerError",
    "UnsupportedCapabilityError",
    "__version__",
    "build_ca_certificate",
    "hookimpl",
    "parse_serial",
    "signature_hash",
]
