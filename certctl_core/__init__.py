"""certctl_core: the issuer port, domain values, errors, plugin hooks and the registry.

Connector authors need only this package: implement :class:`IssuerPort` (optionally
through :class:`IssuerBase`), register a :class:`ConnectorType` with :data:`hookimpl`,
and run the contract suite (``certctl_contracts``) against it.
"""

from __future__ import annotations

from certctl_core.base import IssuerBase
from certctl_core.domain import (
    Capabilities,
    CertificateRequest,
    CertificateStatus,
    HealthCheck,
    HealthReport,
    IssuedCertificate,
    Profile,
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
from certctl_core.plugins import PluginFailure, PluginHost
from certctl_core.ports import ConnectorFactory, ConnectorType, IssuerPort
from certctl_core.registry import IssuerInfo, PreparedIssuer, Registry

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
    "ConnectorFactory",
    "ConnectorType",
    "HealthCheck",
    "HealthReport",
    "InvalidRequestError",
    "InvalidResponseError",
    "IssuedCertificate",
    "IssuerBase",
    "IssuerClosedError",
    "IssuerInfo",
    "IssuerPort",
    "NotFoundError",
    "PermanentError",
    "PluginError",
    "PluginFailure",
    "PluginHost",
    "PolicyViolationError",
    "Profile",
    "PreparedIssuer",
    "Registry",
    "RejectedError",
    "Revocation",
    "RevocationReason",
    "Secret",
    "SubjectAltNames",
    "TransientError",
    "UnknownConnectorTypeError",
    "UnknownIssuerError",
    "UnsupportedCapabilityError",
    "__version__",
    "hookimpl",
    "parse_serial",
]
