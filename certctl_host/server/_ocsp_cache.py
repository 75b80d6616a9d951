"""Pre-signed OCSP answers for requests without a nonce (RFC 5019), kept until a revocation.

A request without a nonce may be answered with a response signed earlier, for as long as
that response is current (RFC 5019 §2.2.1, §6). :class:`OCSPCache` keeps such answers,
keyed by issuer and by the request itself (the DER of the request, or the serial of the
``GET .../{hex serial}`` form), and serves each until half of its validity window
(thisUpdate to nextUpdate) has passed; then the next request signs a fresh one.

**Invalidation has one entry point**: :meth:`OCSPCache.invalidate`. Every path that
changes what a serial's status is (a revocation through the API, one arriving from
another replica, a CA replaced or removed) calls it *before* it reports success, so no
cached "good" outlives a revocation call that returned. An answer computed while a
revocation was under way is not stored: :meth:`OCSPCache.epoch` is read before the status
is looked up, and :meth:`OCSPCache.put` drops the answer if the issuer's epoch moved.

A revocation made behind the server's back (``certctl revoke`` on a Local CA's state
directory while the server runs, ``step ca revoke`` at the CA) is seen when the cached
answer is refreshed, at the latest after half the response validity (30 minutes with the
defaults): revoke through the server's API for an immediate effect.

Answers with a nonce are never cached (the nonce is signed into them).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from email.utils import formatdate

import attrs
from cryptography import x509
from cryptography.x509 import ocsp

__all__ = ["CachedAnswer", "OCSPCache", "has_nonce"]

#: DER of the id-pkix-ocsp-nonce OID (1.3.6.1.5.5.7.48.1.2), tag and length included.
_NONCE_OID = bytes.fromhex("06092b0601050507300102")


def has_nonce(request_der: bytes) -> bool:
    """Whether a DER OCSP request may carry a nonce (its OID appears anywhere in it).

    A false positive only costs a cache miss; there are no false negatives.
    """
    return _NONCE_OID in request_der


@attrs.frozen
class CachedAnswer:
    """One pre-signed response and the RFC 5019 §6.2 header values derived from it."""

    der: bytes
    serial: int
    etag: str
    last_modified: str
    expires: str
    next_update: float
    fresh_until: float

    def headers(self, now: float) -> dict[str, str]:
        max_age = max(0, int(self.next_update - now))
        return {
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "Last-Modified": self.last_modified,
            "Expires": self.expires,
            "ETag": self.etag,
        }


def _http_date(value: float) -> str:
    return formatdate(value, usegmt=True)


def describe(der: bytes, now: float) -> CachedAnswer | None:
    """The cacheable facts of a response: None unless it is successful, without a nonce,
    with a nextUpdate still ahead."""
    try:
        response = ocsp.load_der_ocsp_response(der)
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return None
        if any(isinstance(e.value, x509.OCSPNonce) for e in response.extensions):
            return None
        this_update = response.this_update_utc.timestamp()
        next_update_at = response.next_update_utc
        serial = response.serial_number
    except ValueError:
        return None
    if next_update_at is None:
        return None
    next_update = next_update_at.timestamp()
    if next_update <= now:
        return None
    return CachedAnswer(
        der=der,
        serial=serial,
        etag='"' + hashlib.sha256(der).hexdigest()[:32] + '"',
        last_modified=_http_date(this_update),
        expires=_http_date(next_update),
        next_update=next_update,
        fresh_until=this_update + (next_update - this_update) / 2,
    )


class OCSPCache:
    """Pre-signed answers per issuer, at most ``max_entries`` in all (oldest dropped)."""

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.time):
        self._max = max_entries
        self._clock = clock
        self._answers: OrderedDict[tuple[str, bytes], CachedAnswer] = OrderedDict()
        #: issuer -> serial -> keys of its cached answers (for invalidation by serial)
        self._by_serial: dict[str, dict[int, set[bytes]]] = {}
        self._epochs: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def epoch(self, issuer_id: str) -> int:
        """Read before looking a status up; pass to :meth:`put`."""
        return self._epochs.get(issuer_id, 0)

    def get(self, issuer_id: str, key: bytes) -> CachedAnswer | None:
        """The cached answer for this request, while it is fresh."""
        answer = self._answers.get((issuer_id, key))
        if answer is None:
            return None
        if self._clock() >= answer.fresh_until:
            self._forget(issuer_id, key, answer.serial)
            return None
        return answer

    def put(self, issuer_id: str, key: bytes, der: bytes, epoch: int) -> CachedAnswer | None:
        """Keep ``der`` (the answer to a request without a nonce) if it is cacheable and no
        invalidation of the issuer happened since ``epoch`` was read. Returns its facts
        (for the response headers) whether kept or not, or None if it is not cacheable."""
        answer = describe(der, self._clock())
        if answer is None:
            return None
        if self._epochs.get(issuer_id, 0) != epoch:
            return answer  # a revocation ran meanwhile: serve it once, keep nothing
        old = self._answers.pop((issuer_id, key), None)
        if old is not None:
            self._unindex(issuer_id, key, old.serial)
        self._answers[(issuer_id, key)] = answer
        self._by_serial.setdefault(issuer_id, {}).setdefault(answer.serial, set()).add(key)
        while len(self._answers) > self._max:
            (old_issuer, old_key), dropped = self._answers.popitem(last=False)
            self._unindex(old_issuer, old_key, dropped.serial)
        return answer

    def invalidate(self, issuer_id: str, serial: int | None = None) -> None:
        """Forget the issuer's cached answers for ``serial`` (all of them when None).

        THE entry point for every change of revocation state: call it before reporting
        the change done."""
        self._epochs[issuer_id] = self._epochs.get(issuer_id, 0) + 1
        serials = self._by_serial.get(issuer_id)
        if not serials:
            return
        if serial is None:
            for one, keys in list(serials.items()):
                for key in list(keys):
                    self._forget(issuer_id, key, one)
            self._by_serial.pop(issuer_id, None)
            return
        for key in list(serials.get(serial, ())):
            self._forget(issuer_id, key, serial)

    def _forget(self, issuer_id: str, key: bytes, serial: int) -> None:
        self._answers.pop((issuer_id, key), None)
        self._unindex(issuer_id, key, serial)

    def _unindex(self, issuer_id: str, key: bytes, serial: int) -> None:
        serials = self._by_serial.get(issuer_id)
        if serials is None:
            return
        keys = serials.get(serial)
        if keys is None:
            return
        keys.discard(key)
        if not keys:
            del serials[serial]
