"""Checking a CRL that a CA published before passing it on (RFC 5280 §6.3.3, in part)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs
from cryptography import x509

from certctl_core.errors import InvalidResponseError

__all__ = ["CRLInfo", "verify_crl"]

#: How far a CRL's thisUpdate may lie in the future (clock skew between CA and host).
CLOCK_TOLERANCE = dt.timedelta(minutes=5)


@attrs.frozen
class CRLInfo:
    """A verified CRL: its DER and the times a host needs for caching headers."""

    der: bytes = attrs.field(repr=False)
    issuer: x509.Certificate = attrs.field(repr=False)
    this_update: dt.datetime
    next_update: dt.datetime
    number: int | None


def verify_crl(
    der: bytes, chain: Sequence[x509.Certificate], *, now: dt.datetime | None = None
) -> CRLInfo:
    """Check that ``der`` is a current CRL signed by a CA of ``chain``.

    Raises InvalidResponseError naming what is wrong: not DER, issued by a CA outside
    the chain, a bad signature, no nextUpdate, expired, or dated in the future.
    """
    now = now or dt.datetime.now(dt.UTC)
    try:
        crl = x509.load_der_x509_crl(der)
        issuer_name = crl.issuer
    except ValueError:
        raise InvalidResponseError("the CA's CRL is not a DER-encoded X.509 CRL") from None
    issuer = next((cert for cert in chain if cert.subject == issuer_name), None)
    if issuer is None:
        raise InvalidResponseError(
            f"the CA's CRL is issued by {issuer_name.rfc4514_string()}, "
            "which is not in the issuer's chain",
            hint="the CA signs CRLs with a key other than its issuing intermediate's",
        )
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise InvalidResponseError(
            f"the CA's CRL signature does not verify with {issuer_name.rfc4514_string()}'s key"
        )
    next_update = crl.next_update_utc
    if next_update is None:
        raise InvalidResponseError("the CA's CRL has no nextUpdate; clients cannot cache it")
    if next_update <= now:
        raise InvalidResponseError(
            f"the CA's CRL expired at {next_update.isoformat()} (nextUpdate)",
            hint="the CA stopped regenerating its CRL; check its CRL settings and logs",
        )
    if crl.last_update_utc > now + CLOCK_TOLERANCE:
        raise InvalidResponseError(
            f"the CA's CRL is dated {crl.last_update_utc.isoformat()}, in the future",
            hint="check the clocks of the CA and this host",
        )
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    return CRLInfo(der, issuer, crl.last_update_utc, next_update, number)
