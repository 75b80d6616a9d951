"""The one exception tree of certctl connectors.

Every error a connector or the core raises is a :class:`CertctlError`. Hosts catch the
branch they can act on; nothing foreign (``httpx``, ``jwcrypto``, ``ValueError``, ...)
escapes an adapter::

    CertctlError                      issuer_id, connector, hint
    ├── ConfigError                   problems: every invalid field at once
    ├── PluginError                   a plugin could not be loaded or registered
    ├── NotFoundError
    │   ├── UnknownConnectorTypeError
    │   └── UnknownIssuerError
    ├── UnsupportedCapabilityError    an optional operation the connector does not declare
    ├── IssuerClosedError             a call on a connector after close()
    ├── TransientError                retryable; retry_after (seconds or None)
    │   ├── CAUnreachableError        connection refused, DNS, TLS handshake to a live peer
    │   ├── CATimeoutError            connect/read timeout, no answer
    │   └── CAUnavailableError        429 or 5xx from the CA; status, ca_message
    └── PermanentError                retrying the same request will fail the same way
        ├── InvalidRequestError       the request is bad before it leaves (CSR, serial, SANs)
        ├── RejectedError             the CA refused it; status, ca_message
        │   └── AuthenticationError   the CA did not accept our credentials; likely_cause
        ├── PolicyViolationError      profile / provisioner policy, ours or the CA's
        └── InvalidResponseError      the CA answered with something unusable or untrustworthy

Messages never contain secrets: adapters build them from field names and server
messages, never from passwords, keys or tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import attrs

__all__ = [
    "AuthenticationError",
    "CATimeoutError",
    "CAUnavailableError",
    "CAUnreachableError",
    "CertctlError",
    "ConfigError",
    "ConfigProblem",
    "IssuerClosedError",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "PermanentError",
    "PluginError",
    "PolicyViolationError",
    "RejectedError",
    "TransientError",
    "UnknownConnectorTypeError",
    "UnknownIssuerError",
    "UnsupportedCapabilityError",
    "error_context",
]


class CertctlError(Exception):
    """Root of every certctl error.

    ``issuer_id`` and ``connector`` name where the error happened (``None`` when the
    error is not about one issuer); ``hint`` says how to fix it, when we know.
    """

    def __init__(
        self,
        message: str,
        *,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.issuer_id = issuer_id
        self.connector = connector
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.connector or self.issuer_id:
            where = f"[{self.connector or '?'} issuer {self.issuer_id or '?'}] "
        text = f"{where}{self.message}"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


@attrs.frozen
class ConfigProblem:
    """One invalid configuration field: which one, what is wrong, how to fix it."""

    field: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(CertctlError):
    """The configuration is invalid; ``problems`` lists every invalid field at once."""

    def __init__(
        self,
        problems: Iterable[ConfigProblem],
        *,
        issuer_id: str | None = None,
        connector: str | None = None,
    ) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "; ".join(str(p) for p in self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"invalid configuration, {count} {noun}: {lines}",
            issuer_id=issuer_id,
            connector=connector,
        )


class PluginError(CertctlError):
    """A plugin failed to import, or registered something it may not (a duplicate type)."""

    def __init__(
        self,
        message: str,
        *,
        entry_point: str | None = None,
        distribution: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.entry_point = entry_point
        self.distribution = distribution


class NotFoundError(CertctlError):
    """Something was asked for by a name nobody registered."""


class UnknownConnectorTypeError(NotFoundError):
    """No installed plugin provides this connector type."""


class UnknownIssuerError(NotFoundError):
    """No issuer with this id has been built."""


class UnsupportedCapabilityError(CertctlError):
    """The connector does not declare the optional capability that was called."""

    def __init__(
        self,
        capability: str,
        *,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            f"this connector does not support {capability!r}",
            issuer_id=issuer_id,
            connector=connector,
            hint=hint,
        )
        self.capability = capability


class IssuerClosedError(CertctlError):
    """The connector was closed; build a new one (the registry does this on rebuild)."""


class TransientError(CertctlError):
    """A failure that may pass: retry later, after ``retry_after`` seconds if given."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, issuer_id=issuer_id, connector=connector, hint=hint)
        self.retry_after = retry_after


class CAUnreachableError(TransientError):
    """The CA could not be reached (refused, reset, DNS)."""


class CATimeoutError(TransientError):
    """The CA did not answer in time."""


class CAUnavailableError(TransientError):
    """The CA answered 429 or 5xx: busy or broken for now."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        ca_message: str | None = None,
        retry_after: float | None = None,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            retry_after=retry_after,
            issuer_id=issuer_id,
            connector=connector,
            hint=hint,
        )
        self.status = status
        self.ca_message = ca_message


class PermanentError(CertctlError):
    """Retrying the same request will fail the same way.

    ``status`` and ``ca_message`` carry the CA's answer when the CA gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        ca_message: str | None = None,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, issuer_id=issuer_id, connector=connector, hint=hint)
        self.status = status
        self.ca_message = ca_message


class InvalidRequestError(PermanentError):
    """The request is malformed or cannot be expressed to this CA (checked locally)."""


class RejectedError(PermanentError):
    """The CA refused the request; ``ca_message`` says why, in the CA's words."""


class AuthenticationError(RejectedError):
    """The CA did not accept our credentials; ``likely_cause`` is our diagnosis."""

    def __init__(
        self,
        message: str,
        *,
        likely_cause: str | None = None,
        status: int | None = None,
        ca_message: str | None = None,
        issuer_id: str | None = None,
        connector: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            ca_message=ca_message,
            issuer_id=issuer_id,
            connector=connector,
            hint=hint,
        )
        self.likely_cause = likely_cause


class PolicyViolationError(PermanentError):
    """A profile or CA policy forbids this request, or the CA's answer broke our policy."""


class InvalidResponseError(PermanentError):
    """The CA's answer is unusable: malformed, too large, or not what was requested."""


@contextmanager
def error_context(issuer_id: str, connector: str) -> Iterator[None]:
    """Fill ``issuer_id`` and ``connector`` on any CertctlError raised in the block.

    The registry wraps every call to a connector (and its factory) in this, so adapters
    raise errors without naming themselves; a value an error already carries is kept.
    """
    try:
        yield
    except CertctlError as exc:
        if exc.issuer_id is None:
            exc.issuer_id = issuer_id
        if exc.connector is None:
            exc.connector = connector
        raise
