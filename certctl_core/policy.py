"""Profile policy applied by the core around every issuance, whatever the connector.

Before the connector is called, :func:`cap_request` caps an explicitly requested
validity by the profile's max TTL (connectors then use
:meth:`~certctl_core.domain.CertificateRequest.effective_validity` for their default).
After it returns, :func:`verify_issued` checks the certificate against the request: the
same public key as the CSR, and a NotAfter within the cap. A CA that returns a longer
certificate is a :class:`~certctl_core.errors.PolicyViolationError`, not a success.
"""

from __future__ import annotations

import datetime as dt

import attrs

from certctl_core.domain import CertificateRequest, IssuedCertificate, public_key_der
from certctl_core.errors import InvalidResponseError, PolicyViolationError

__all__ = ["CLOCK_TOLERANCE", "cap_request", "verify_issued"]

#: How far a CA's clock may run ahead of ours before a NotAfter counts as too late.
#: step-ca accepts tokens within one minute of skew, so more than that fails anyway.
CLOCK_TOLERANCE = dt.timedelta(minutes=1)


def cap_request(request: CertificateRequest) -> CertificateRequest:
    """The request with its explicit validity capped by the profile's max TTL."""
    cap = request.profile.max_ttl
    if cap is not None and request.validity is not None and request.validity > cap:
        return attrs.evolve(request, validity=cap)
    return request


def _limit(request: CertificateRequest) -> dt.timedelta | None:
    limits = [v for v in (request.validity, request.profile.max_ttl) if v is not None]
    return min(limits) if limits else None


def verify_issued(
    request: CertificateRequest,
    issued: IssuedCertificate,
    *,
    requested_at: dt.datetime,
    issuer_id: str | None = None,
    connector: str | None = None,
) -> None:
    """Check an issued certificate against its request.

    Raises InvalidResponseError when the public key differs from the CSR's and
    PolicyViolationError when NotAfter lies beyond ``requested_at`` + the cap.
    """
    if public_key_der(issued.certificate.public_key()) != request.public_key_der():
        raise InvalidResponseError(
            "the CA returned a certificate for a different public key than the CSR's",
            hint="the CA or connector is misbehaving; do not use this certificate",
            issuer_id=issuer_id,
            connector=connector,
        )
    limit = _limit(request)
    if limit is None:
        return
    # Compare durations, not dates: a cap of centuries must not overflow datetime.
    if issued.not_after - requested_at - CLOCK_TOLERANCE > limit:
        latest = requested_at + limit + CLOCK_TOLERANCE
        raise PolicyViolationError(
            f"the CA returned a certificate valid until {issued.not_after.isoformat()}, "
            f"beyond the {limit} allowed by profile {request.profile.name!r} "
            f"(latest acceptable {latest.isoformat()})",
            hint="the CA ignored the requested lifetime; check the connector and CA policy",
            issuer_id=issuer_id,
            connector=connector,
        )
