"""A CA private key paired with the AlgorithmIdentifier its signatures carry.

Hand-encoded structures (CRLs, OCSP responses) need the DER of the signature algorithm
and a way to sign bytes; the certificate builders of ``cryptography`` need the hash.
:class:`Signer` gives all three for the key types certctl signs with.
"""

from __future__ import annotations

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from certctl_core.pki import SignatureHash, signature_hash
from certctl_core.revocation import der as _der

__all__ = ["SigningKey", "Signer", "UnsupportedKeyError"]

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: ecdsa-with-SHA256/384/512, by the digest :func:`signature_hash` picks for each curve.
_EC_ALGORITHMS: dict[str, str] = {
    "secp256r1": "1.2.840.10045.4.3.2",
    "secp384r1": "1.2.840.10045.4.3.3",
    "secp521r1": "1.2.840.10045.4.3.4",
}
_RSA_SHA256 = "1.2.840.113549.1.1.11"
_ED25519 = "1.3.101.112"


class UnsupportedKeyError(Exception):
    """The key is of a type or curve certctl cannot sign with."""


@attrs.frozen
class Signer:
    """Signs bytes with ``key``; ``algorithm_der`` is the matching AlgorithmIdentifier."""

    key: SigningKey = attrs.field(repr=False)
    algorithm_der: bytes
    hash_algorithm: SignatureHash | None

    @classmethod
    def for_key(cls, key: object) -> Signer:
        """Raises UnsupportedKeyError for keys other than RSA >= 2048, EC P-256/384/521, Ed25519."""
        if isinstance(key, ec.EllipticCurvePrivateKey):
            oid = _EC_ALGORITHMS.get(key.curve.name)
            if oid is None:
                raise UnsupportedKeyError(f"EC curve {key.curve.name}")
            return cls(key, _der.sequence(_der.object_identifier(oid)), signature_hash(key))
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise UnsupportedKeyError(f"RSA key of {key.key_size} bits (2048 at least)")
            algorithm = _der.sequence(_der.object_identifier(_RSA_SHA256), _der.null())
            return cls(key, algorithm, signature_hash(key))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return cls(key, _der.sequence(_der.object_identifier(_ED25519)), None)
        raise UnsupportedKeyError(type(key).__name__)

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data`` in the form the algorithm's BIT STRING holds."""
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert self.hash_algorithm is not None
            return key.sign(data, ec.ECDSA(self.hash_algorithm))
        if isinstance(key, rsa.RSAPrivateKey):
            assert self.hash_algorithm is not None
            return key.sign(data, padding.PKCS1v15(), self.hash_algorithm)
        return key.sign(data)
