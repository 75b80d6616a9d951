"""One-time tokens (OTT): a fresh signed JWT for every request and every retry.

step-ca stores a token's ``jti`` before it even checks the signature, so a token is spent
by any answer, including a 403: never reuse one. It also rejects tokens whose ``iat`` is
before the CA process started, so tokens are never minted ahead of time.

Tokens are signed with ``cryptography`` directly (RFC 7515 compact serialization, RFC
7518 signature encodings): the header is encoded once per key, and each token costs one
JSON encoding and one signature. jwcrypto, which decrypts the key, spends about as much
again per token copying its header registry (ADR 0016).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from certctl_stepca._keyfile import ProvisionerKey

__all__ = ["TokenSigner", "mint_token"]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signing_function(private: Any, algorithm: str) -> Callable[[bytes], bytes]:
    """``sign(data) -> JWS signature bytes`` for ``algorithm`` with a cryptography key."""
    family, bits = algorithm[:2], algorithm[2:]
    if algorithm == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign
    if family == "ES" and isinstance(private, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(_HASHES[bits]())
        size = (private.curve.key_size + 7) // 8
        key_ec = private

        def sign_ec(data: bytes) -> bytes:
            # JWS wants r || s as fixed-size big-endian integers (RFC 7518 3.4), not DER.
            r, s = decode_dss_signature(key_ec.sign(data, ecdsa))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if family in ("RS", "PS") and isinstance(private, rsa.RSAPrivateKey):
        digest = _HASHES[bits]()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if family == "RS"
            else padding.PSS(mgf=padding.MGF1(_HASHES[bits]()), salt_length=digest.digest_size)
        )
        key_rsa = private
        return lambda data: key_rsa.sign(data, pad, digest)
    raise ValueError(f"cannot sign {algorithm} with a {type(private).__name__}")


class TokenSigner:
    """Mints step-ca one-time tokens with one provisioner key (built once per connector)."""

    def __init__(self, key: ProvisionerKey) -> None:
        header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}
        self._header = _b64(json.dumps(header, separators=(",", ":")).encode())
        self._sign = _signing_function(key.key.get_op_key("sign"), key.algorithm)

    def __repr__(self) -> str:
        return "TokenSigner(<key hidden>)"

    def mint(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str,
        sans: Sequence[str] = (),
        lifetime_seconds: int = 300,
        now: float | None = None,
    ) -> str:
        """A compact JWS step-ca accepts as the ``ott`` of ``/1.0/sign`` or ``/1.0/revoke``."""
        issued_at = int(now if now is not None else time.time())
        claims: dict[str, object] = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime_seconds,
            "jti": secrets.token_hex(32),
        }
        if sans:
            claims["sans"] = list(sans)
        signing_input = (
            self._header + b"." + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        return (signing_input + b"." + _b64(self._sign(signing_input))).decode("ascii")


def mint_token(
    key: ProvisionerKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    sans: Sequence[str] = (),
    lifetime_seconds: int = 300,
    now: float | None = None,
) -> str:
    """One token without keeping a :class:`TokenSigner` (which the connector keeps)."""
    return TokenSigner(key).mint(
        issuer=issuer,
        audience=audience,
        subject=subject,
        sans=sans,
        lifetime_seconds=lifetime_seconds,
        now=now,
    )
