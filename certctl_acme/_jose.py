"""JWS for ACME (RFC 8555 section 6.2, RFC 7515/7518) with ``cryptography`` alone.

ACME needs only the flattened JSON serialization, protected headers, and three kinds of
signature: ECDSA (ES256/ES384) or RSA PKCS#1 v1.5 (RS256) for account keys, and HMAC
(HS256) for External Account Binding. That is small enough to write here instead of
pulling in a JOSE library (ADR 0025).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "AccountKey",
    "b64url",
    "b64url_decode",
    "eab_hmac_key_bytes",
    "eab_jws",
    "generate_account_key",
    "load_account_key",
]

AccountPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; raises ValueError for anything else."""
    if not isinstance(text, str) or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def eab_hmac_key_bytes(text: str) -> bytes:
    """The EAB HMAC key as a CA gives it: base64url, padded or not; ValueError otherwise."""
    return b64url_decode(text.strip().rstrip("="))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(size, "big")


class AccountKey:
    """An ACME account key: its JWK, thumbprint and signatures. Never shows the key."""

    def __init__(self, key: AccountPrivateKey) -> None:
        self._key = key
        self._hash: hashes.HashAlgorithm
        if isinstance(key, ec.EllipticCurvePrivateKey):
            curve = key.curve
            if isinstance(curve, ec.SECP256R1):
                self.alg, self._hash, self._size, crv = "ES256", hashes.SHA256(), 32, "P-256"
            elif isinstance(curve, ec.SECP384R1):
                self.alg, self._hash, self._size, crv = "ES384", hashes.SHA384(), 48, "P-384"
            else:
                raise ValueError("only P-256 and P-384 EC account keys are supported")  # noqa: TRY004
            numbers = key.public_key().public_numbers()
            self.jwk: dict[str, str] = {
                "crv": crv,
                "kty": "EC",
                "x": b64url(_int_bytes(numbers.x, self._size)),
                "y": b64url(_int_bytes(numbers.y, self._size)),
            }
        else:
            if key.key_size < 2048:
                raise ValueError("RSA account keys must have at least 2048 bits")
            self.alg, self._hash, self._size = "RS256", hashes.SHA256(), 0
            public = key.public_key().public_numbers()
            self.jwk = {
                "e": b64url(_int_bytes(public.e)),
                "kty": "RSA",
                "n": b64url(_int_bytes(public.n)),
            }
        self.thumbprint = b64url(hashlib.sha256(_json(self.jwk)).digest())

    def __repr__(self) -> str:
        return f"AccountKey(alg={self.alg}, thumbprint={self.thumbprint})"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            der = self._key.sign(data, ec.ECDSA(self._hash))
            r, s = decode_dss_signature(der)
            return _int_bytes(r, self._size) + _int_bytes(s, self._size)
        return self._key.sign(data, padding.PKCS1v15(), self._hash)

    def jws(self, payload: Any, *, url: str, nonce: str | None, kid: str | None) -> dict[str, str]:
        """A flattened JWS; ``payload`` None means POST-as-GET (empty payload)."""
        protected: dict[str, Any] = {"alg": self.alg, "url": url}
        if nonce is not None:
            protected["nonce"] = nonce
        if kid is not None:
            protected["kid"] = kid
        else:
            protected["jwk"] = self.jwk
        head = b64url(_json(protected))
        body = "" if payload is None else b64url(_json(payload))
        signature = self.sign(f"{head}.{body}".encode("ascii"))
        return {"protected": head, "payload": body, "signature": b64url(signature)}

    def pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")


def generate_account_key() -> AccountKey:
    return AccountKey(ec.generate_private_key(ec.SECP256R1()))


def load_account_key(pem: str) -> AccountKey:
    """Parse an unencrypted PEM private key; ValueError says what is wrong (not the key)."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("is not an unencrypted PEM private key (EC P-256/P-384 or RSA)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("must be an EC (P-256, P-384) or RSA key")  # noqa: TRY004
    return AccountKey(key)


def eab_jws(key_id: str, hmac_key: bytes, jwk: dict[str, str], url: str) -> dict[str, str]:
    """The External Account Binding JWS of RFC 8555 section 7.3.4 (HS256)."""
    head = b64url(_json({"alg": "HS256", "kid": key_id, "url": url}))
    body = b64url(_json(jwk))
    mac = hmac.new(hmac_key, f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
    return {"protected": head, "payload": body, "signature": b64url(mac)}
