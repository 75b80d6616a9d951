"""Keys, SANs, CSRs and durations from command-line text."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certctl_core.domain import public_key_der
from certctl_host.cli._exit import UsageError

__all__ = [
    "KEY_TYPES",
    "PrivateKey",
    "build_csr",
    "generate_key",
    "key_type_of",
    "load_private_key",
    "parse_duration",
    "parse_san",
    "private_key_pem",
    "same_public_key",
    "subject_for",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _rsa(bits: int) -> Callable[[], PrivateKey]:
    return lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)


#: ``--key-type`` choices and how to make each key.
KEY_TYPES: dict[str, Callable[[], PrivateKey]] = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": _rsa(2048),
    "rsa-3072": _rsa(3072),
    "rsa-4096": _rsa(4096),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def generate_key(key_type: str) -> PrivateKey:
    try:
        return KEY_TYPES[key_type]()
    except KeyError:
        raise UsageError(
            f"unknown key type {key_type!r}", hint=f"use one of {', '.join(KEY_TYPES)}"
        ) from None


def key_type_of(key: Any) -> str | None:
    """The ``--key-type`` name of a public or private key, or None if we cannot make one."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        name = f"rsa-{key.key_size}"
        return name if name in KEY_TYPES else None
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    return None


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the file is created 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(data: bytes, path: str) -> PrivateKey:
    """Parse an unencrypted PEM (PKCS#8, SEC1 or PKCS#1) or DER private key."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise UsageError(
            f"the private key {path!r} is encrypted",
            hint="certctl reads unencrypted keys only; decrypt it to a 0600 file "
            "('openssl pkey -in KEY -out PLAIN'), or renew with --new-key",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(
            f"the private key {path!r} could not be read",
            hint="give a PEM private key ('-----BEGIN PRIVATE KEY-----' or EC/RSA PEM)",
        ) from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise UsageError(f"the private key {path!r} is of a type certctl cannot use")
    return key


_SAN_PREFIXES = ("dns", "ip", "email", "uri")


def parse_san(text: str) -> x509.GeneralName:
    """One ``--san``: an IP, an email (has ``@``), a URI (has ``://``) or a DNS name.

    A ``dns:``, ``ip:``, ``email:`` or ``uri:`` prefix forces the type.
    """
    value = text.strip()
    kind, sep, rest = value.partition(":")
    forced = kind.lower() if sep and kind.lower() in _SAN_PREFIXES and "://" not in value else None
    if forced is not None:
        value = rest.strip()
    name = _general_name(value, forced) if value else None
    if name is None:
        raise UsageError(
            f"{text!r} is not a valid subject alternative name",
            hint="give a DNS name (app.example.com, *.example.com), an IP address, an email "
            "address or a URI; force the type with dns:, ip:, email: or uri:",
        )
    return name


def _general_name(value: str, forced: str | None) -> x509.GeneralName | None:
    if forced == "ip" or (forced is None and _looks_like_ip(value)):
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            return None
    if forced == "email" or (forced is None and "@" in value and "://" not in value):
        local, _, domain = value.partition("@")
        ok = local and domain and "@" not in domain and _DNS.match(domain)
        return x509.RFC822Name(value) if ok else None
    if forced == "uri" or (forced is None and "://" in value):
        return x509.UniformResourceIdentifier(value) if " " not in value else None
    return x509.DNSName(value.lower()) if _DNS.match(value) else None


_DNS = re.compile(
    r"\A(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?\Z",
    re.IGNORECASE,
)


def _looks_like_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def build_csr(
    key: PrivateKey,
    *,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName],
) -> x509.CertificateSigningRequest:
    """A CSR for ``subject`` and ``sans``, signed by ``key`` (SHA-256; none for Ed25519)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def subject_for(common_name: str | None) -> x509.Name:
    if common_name is None:
        return x509.Name([])
    if not common_name.strip() or len(common_name) > 64:
        raise UsageError(
            f"{common_name!r} is not a usable common name",
            hint="give 1 to 64 characters (RFC 5280 ub-common-name)",
        )
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    return public_key_der(key.public_key()) == public_key_der(cert.public_key())


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``8h``, ``30m``, ``3600s`` or combinations (``1d12h``); positive."""
    raw = text.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw) or total <= 0 or total > 100 * 365 * 86400:
        raise UsageError(
            f"{text!r} is not a duration",
            hint="write a number with a unit: 90d, 8h, 30m, 3600s, or combined like 1d12h",
        )
    return dt.timedelta(seconds=total)
