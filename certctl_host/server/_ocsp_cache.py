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

Revocations written behind this process's back are caught before a cached answer is
served (:meth:`IssuerService.ocsp_answer_current`): a commit to the server's SQLite store by
any process (the CLI, another server) clears the cache (:func:`files_token`), and an answer
a connector signed itself (the Local CA) is served only while the connector's own
``status()`` still says what it states. Not caught at once: a revocation a delegated
issuer's CA lists only in its CRL (``step ca revoke``), seen when the cached answer is
refreshed, at most :data:`CRL_RECHECK_SECONDS` later (as when the connector's CRL cache
is refreshed). On a store other servers share (PostgreSQL replicas) nothing is cached:
another replica's revocation arrives by a notice that could lag its returned call.

Answers with a nonce are never cached (the nonce is signed into them).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.x509 import ocsp

__all__ = ["CRL_RECHECK_SECONDS", "CachedAnswer", "OCSPCache", "files_token", "has_nonce"]

#: A cached answer of an issuer whose CA publishes a CRL is re-derived after this long, so
#: a revocation the CA lists only in its CRL shows as it did before answers were cached
#: (the connectors keep a fetched CRL about as long).
CRL_RECHECK_SECONDS = 60.0

#: DER of the id-pkix-ocsp-nonce OID (1.3.6.1.5.5.7.48.1.2), tag and length included.
_NONCE_OID = bytes.fromhex("06092b0601050507300102")


def files_token(path: Path | None) -> object:
    """Changes whenever any process commits to the SQLite database at ``path`` (WAL mode):
    the times and sizes of the database and its ``-wal`` file, and the header of the
    ``-shm`` WAL index, which every commit rewrites (its change counter and last frame:
    the WAL file's size stays put once it is reused after a checkpoint, and a file time
    may not move between two commits in one clock tick). Two ``stat`` calls and a 48-byte
    read, a few microseconds. None without a path."""
    if path is None:
        return None
    token: list[object] = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            found = os.stat(name)
        except OSError:
            token.append(None)
            continue
        token.append((found.st_mtime_ns, found.st_size, found.st_ino))
    try:
        with open(path.with_name(path.name + "-shm"), "rb", buffering=0) as shm:
            token.append(shm.read(48))
    except OSError:
        token.append(None)
    return tuple(token)


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
    #: "good", "revoked" or "unknown", as the response states it
    state: str
    etag: str
    last_modified: str
    expires: str
    next_update: float
    fresh_until: float
    #: when this process described the answer (time.time())
    signed_at: float = 0.0
    #: what :func:`files_token` said before the status behind this answer was read
    token: object = None

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
        state = response.certificate_status.name.lower()
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
        state=state,
        etag='"' + hashlib.sha256(der).hexdigest()[:32] + '"',
        last_modified=_http_date(this_update),
        expires=_http_date(next_update),
        next_update=next_update,
        fresh_until=this_update + (next_update - this_update) / 2,
        signed_at=now,
    )


class OCSPCache:
    """Pre-signed answers per issuer, at most ``max_entries`` in all (the least recently
    used dropped; an answer with its responder certificate is about 1 KB, a key 32 bytes).
    """

    def __init__(self, *, max_entries: int = 50_000, clock: Callable[[], float] = time.time):
        self._max = max_entries
        self._clock = clock
        self._answers: OrderedDict[tuple[str, bytes], CachedAnswer] = OrderedDict()
        #: issuer -> serial -> keys of its cached answers (for invalidation by serial)
        self._by_serial: dict[str, dict[int, set[bytes]]] = {}
        self._epochs: dict[str, int] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._answers)

    def epoch(self, issuer_id: str) -> int:
        """Read before looking a status up; pass to :meth:`put`. (Both counters only
        grow, so their sum moves whenever either does.)"""
        return self._generation + self._epochs.get(issuer_id, 0)

    def get(self, issuer_id: str, key: bytes) -> CachedAnswer | None:
        """The cached answer for this request, while it is fresh."""
        answer = self._answers.get((issuer_id, key))
        if answer is None:
            return None
        if self._clock() >= answer.fresh_until:
            self._forget(issuer_id, key, answer.serial)
            return None
        self._answers.move_to_end((issuer_id, key))  # least recently used goes first
        return answer

    def put(
        self, issuer_id: str, key: bytes, der: bytes, epoch: int, store_token: object = None
    ) -> CachedAnswer | None:
        """Keep ``der`` (the answer to a request without a nonce) if it is cacheable and no
        invalidation of the issuer happened since ``epoch`` was read (``store_token``, read
        with the epoch, is what the store looked like then: kept with the answer, which is
        served only while the store still says so). Returns its facts (for the response
        headers) whether kept or not, or None if it is not cacheable."""
        answer = describe(der, self._clock())
        if answer is None:
            return None
        if self.epoch(issuer_id) != epoch:
            return answer  # a revocation ran meanwhile: serve it once, keep nothing
        answer = attrs.evolve(answer, token=store_token)
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

    def invalidate_all(self) -> None:
        """Forget every cached answer of every issuer (the store changed underneath)."""
        self._generation += 1
        self._answers.clear()
        self._by_serial.clear()

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
