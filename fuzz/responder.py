"""The ``responder`` fuzz target: the delegated OCSP responder (certctl_host/responder.py).

Fuzzed: what the issuer's CA hands back for the responder certificate (a proper one,
one without OCSPSigning, one for another key or from another CA, an expired one, DER
bytes from the input, or an error), the issuer chain (the CA, bytes from the input, an
error), the clock between calls, the ledger's answer, and the OCSP request itself.

fuzz/fuzz.py imports this module with coverage instrumentation of certctl_core and
certctl_host. Contract: ``DelegatedResponder.responder()`` returns an OCSPResponder or
None and never raises; ``OCSPResponder.respond()`` returns DER bytes and never raises.
Anything else escaping is a crash.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable

import atheris
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl_core.domain import (
    CertificateRequest,
    CertificateStatus,
    IssuedCertificate,
    RevocationReason,
)
from certctl_core.errors import CertctlError, InvalidResponseError, TransientError
from certctl_host.responder import DelegatedResponder

__all__ = ["check_responder", "seed_inputs"]

_EPOCH = 1_700_000_000.0
# The responder logs every failure it is fed; thousands of runs a second need no log.
logging.getLogger("certctl_host").setLevel(logging.CRITICAL)
logging.getLogger("certctl_core").setLevel(logging.CRITICAL)
_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


@functools.cache
def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = dt.datetime.fromtimestamp(_EPOCH - 86400, dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _sign(
    public_key: ec.EllipticCurvePublicKey,
    *,
    ca: str = "Fuzz Issuing CA",
    eku: bool = True,
    start: float = _EPOCH,
    seconds: int = 86400,
    serial: int | None = None,
) -> x509.Certificate:
    issuer, issuer_key = _ca(ca)
    not_before = dt.datetime.fromtimestamp(start, dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "responder")]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(seconds=seconds))
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _der_certificate(data: bytes) -> x509.Certificate:
    """A certificate from arbitrary bytes, or the error a connector raises for junk."""
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidResponseError("the CA returned something that is not a certificate") from None


def _request(serial: int, issuer: x509.Certificate, nonce: bytes | None) -> bytes:
    """A well-formed DER OCSP request for ``serial`` of ``issuer`` (SHA-1 CertID)."""
    leaf = _sign(_LEAF_KEY.public_key(), eku=False, serial=serial)
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())  # noqa: S303
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def check_responder(data: bytes) -> None:
    asyncio.run(_check(atheris.FuzzedDataProvider(data)))


async def _check(fdp: atheris.FuzzedDataProvider) -> None:
    issuing, _ = _ca("Fuzz Issuing CA")
    now = [_EPOCH + fdp.ConsumeIntInRange(-86400, 3 * 86400)]

    async def chain() -> tuple[x509.Certificate, ...]:
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 1:
            raise TransientError("the CA is unavailable")
        if kind == 2:
            return (_der_certificate(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))),)
        if kind == 3:
            return (_ca("Another CA")[0], issuing)
        return (issuing,)

    async def issue(request: CertificateRequest) -> IssuedCertificate:
        public_key = request.csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        kind = fdp.ConsumeIntInRange(0, 6)
        start = now[0] + fdp.ConsumeIntInRange(-3 * 86400, 3600)
        seconds = fdp.ConsumeIntInRange(1, 30 * 86400)
        if kind == 1:
            raise TransientError("the CA is unavailable")
        if kind == 2:
            cert = _sign(public_key, eku=False, start=start, seconds=seconds)
        elif kind == 3:
            other = ec.generate_private_key(ec.SECP256R1()).public_key()
            cert = _sign(other, start=start, seconds=seconds)
        elif kind == 4:
            cert = _sign(public_key, ca="Another CA", start=start, seconds=seconds)
        elif kind == 5:
            cert = _der_certificate(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600)))
        else:
            cert = _sign(public_key, start=start, seconds=seconds)
        return IssuedCertificate(cert, (cert, issuing))

    async def lookup(serial: int) -> CertificateStatus:
        kind = fdp.ConsumeIntInRange(0, 4)
        if kind == 0:
            raise TransientError("the ledger is unavailable")
        if kind == 1:
            return CertificateStatus(serial, "good")
        if kind == 2:
            return CertificateStatus(serial, "unknown")
        when = (
            None
            if kind == 3
            else dt.datetime.fromtimestamp(now[0] - fdp.ConsumeIntInRange(0, 10**7), dt.UTC)
        )
        reason = fdp.PickValueInList([None, *RevocationReason])
        return CertificateStatus(serial, "revoked", when, reason)

    clock: Callable[[], float] = lambda: now[0]  # noqa: E731
    delegated = DelegatedResponder(
        "fuzz", issue, chain, retry_pause=fdp.ConsumeIntInRange(0, 60), clock=clock
    )
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 4)):
            now[0] += fdp.ConsumeIntInRange(0, 2 * 86400)
            responder = await delegated.responder()
            if responder is None:
                continue
            if fdp.ConsumeBool():
                request = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
            else:
                serial = fdp.ConsumeIntInRange(1, 2**159 - 1)
                nonce = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
                request = _request(serial, issuing, nonce or None)
            answer = await responder.respond(request, lookup)
            assert isinstance(answer, bytes)
            ocsp.load_der_ocsp_response(answer)  # what we send always parses
        assert delegated.last_error is None or isinstance(delegated.last_error, str)
    except CertctlError as exc:  # pragma: no cover - a crash: responder() never raises
        raise AssertionError(f"DelegatedResponder raised {exc!r}") from exc
    finally:
        await delegated.aclose()


def seed_inputs() -> list[bytes]:
    """A few inputs that reach a signed response, for fuzz/seeds.py."""
    return [bytes([0] * 64), bytes([1, 0, 0, 0, 6, 0, 0, 0] * 16), bytes(range(256))]
