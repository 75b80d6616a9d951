"""A delegated OCSP responder certificate obtained from the issuer's own CA, kept fresh.

For a CA without an OCSP responder of its own (step-ca has none), the host asks that CA
for a certificate with the OCSPSigning EKU (for step-ca: through a second provisioner
whose x509 template sets it) and answers OCSP from its ledger, signing with that
certificate. :class:`DelegatedResponder` holds the current one and gets a new key and
certificate when less than a third of the old one's lifetime is left, or when the
issuing CA changed (a new intermediate; the chain is looked at once a minute). Failures
are logged and retried after a pause; meanwhile the old certificate serves while it is
valid.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_core.domain import CertificateRequest, IssuedCertificate, Profile
from certctl_core.errors import CertctlError
from certctl_core.revocation.ocsp import OCSPResponder

__all__ = ["RESPONDER_PROFILE", "DelegatedResponder"]

log = logging.getLogger(__name__)

#: The profile named in the responder certificate's request.
RESPONDER_PROFILE = Profile("ocsp-responder")

IssueFn = Callable[[CertificateRequest], Awaitable[IssuedCertificate]]
ChainFn = Callable[[], Awaitable[tuple[x509.Certificate, ...]]]


class DelegatedResponder:
    """Keeps a delegated OCSP responder certificate for one issuer.

    ``issue`` asks the issuer's CA for a certificate (the host passes a registry issuer
    whose CA stamps the OCSPSigning EKU); ``issuer_chain`` returns the issuer's chain,
    issuing CA first. ``responder()`` returns a ready :class:`OCSPResponder`, or None
    while none could be obtained (the host then answers ``unauthorized``).
    """

    def __init__(
        self,
        issuer_id: str,
        issue: IssueFn,
        issuer_chain: ChainFn,
        *,
        response_validity: dt.timedelta = dt.timedelta(hours=1),
        renew_fraction: float = 1 / 3,
        retry_pause: float = 30.0,
        chain_check_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer_id = issuer_id
        self._issue = issue
        self._issuer_chain = issuer_chain
        self._response_validity = response_validity
        self._renew_fraction = renew_fraction
        self._retry_pause = retry_pause
        self._chain_check_interval = chain_check_interval
        self._chain_checked_at = 0.0
        self._clock = clock
        self._current: OCSPResponder | None = None
        self._renew_at = 0.0
        self._failed_at: float | None = None
        self._last_error: str | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"DelegatedResponder(issuer_id={self.issuer_id!r})"

    @property
    def last_error(self) -> str | None:
        """Why the last attempt to obtain a certificate failed, while that stands."""
        return self._last_error if self._failed_at is not None else None

    def _usable(self, responder: OCSPResponder | None, now: float) -> bool:
        return responder is not None and now < responder.not_after.timestamp()

    async def responder(self) -> OCSPResponder | None:
        """The current responder, renewed first if it is due (and a try is allowed)."""
        if self._closed:
            return None
        now = self._clock()
        if self._current is not None and now - self._chain_checked_at >= self._chain_check_interval:
            await self._check_issuing_ca(self._current, now)
        if self._current is not None and now < self._renew_at:
            return self._current
        if self._failed_at is not None and now - self._failed_at < self._retry_pause:
            return self._current if self._usable(self._current, now) else None
        async with self._lock:
            now = self._clock()
            if self._current is not None and now < self._renew_at:
                return self._current
            if self._failed_at is not None and now - self._failed_at < self._retry_pause:
                return self._current if self._usable(self._current, now) else None
            try:
                fresh = await self._obtain()
            except CertctlError as exc:
                self._failed_at = now
                self._last_error = exc.message
                log.warning(
                    "issuer %s: cannot obtain an OCSP responder certificate: %s%s",
                    self.issuer_id,
                    exc.message,
                    f" ({exc.hint})" if exc.hint else "",
                )
                return self._current if self._usable(self._current, now) else None
            self._failed_at = None
            self._chain_checked_at = now
            self._current = fresh
            start = fresh.certificate.not_valid_before_utc.timestamp()
            end = fresh.certificate.not_valid_after_utc.timestamp()
            self._renew_at = end - (end - start) * self._renew_fraction
            log.info(
                "issuer %s: OCSP responder certificate %x valid until %s",
                self.issuer_id,
                fresh.certificate.serial_number,
                fresh.certificate.not_valid_after_utc.isoformat(),
            )
            return fresh

    async def _check_issuing_ca(self, current: OCSPResponder, now: float) -> None:
        """Renew at once when the issuer's CA is no longer the one that signed ours
        (a rotated intermediate): requests naming the new CA would all be unauthorized."""
        self._chain_checked_at = now
        try:
            issuing = (await self._issuer_chain())[0]
        except CertctlError as exc:
            log.info("issuer %s: cannot read the CA chain: %s", self.issuer_id, exc.message)
            return
        if issuing != current.issuer_cert and self._current is current:
            log.info(
                "issuer %s: the issuing CA changed; renewing the OCSP responder", self.issuer_id
            )
            self.invalidate()

    def invalidate(self) -> None:
        """Forget the current certificate: the next call obtains a new one."""
        self._renew_at = 0.0
        self._failed_at = None

    async def _obtain(self) -> OCSPResponder:
        chain = await self._issuer_chain()
        issuer_cert = chain[0]
        key = ec.generate_private_key(ec.SECP256R1())
        # A DNS-shaped name in both CN and SAN: CAs such as step-ca demand the CSR's
        # SANs match what the token (or ACME order) names, and copy them into the cert.
        label = re.sub(r"[^a-z0-9-]+", "-", self.issuer_id.lower()).strip("-")[:40] or "issuer"
        name = f"ocsp-responder.{label}.certctl.invalid"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        issued = await self._issue(CertificateRequest.from_csr(csr, profile=RESPONDER_PROFILE))
        return OCSPResponder(issuer_cert, issued.certificate, key, validity=self._response_validity)

    async def aclose(self) -> None:
        self._closed = True
        self._current = None
