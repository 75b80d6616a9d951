"""What the local CA certifies: subject keys it accepts and the names a leaf carries.

Both checks raise InvalidRequestError with a hint that says how to fix the CSR. They run
before a serial is drawn, so a refused request leaves nothing in the ledger.
"""

from __future__ import annotations

import ipaddress
import re

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certctl_core import InvalidRequestError, SubjectAltNames
from certctl_localca._config import UsageProfile

__all__ = ["MIN_RSA_BITS", "SUBJECT_CURVES", "check_subject_key", "leaf_sans"]

#: The smallest RSA subject key certified (NIST SP 800-57, CA/B Forum baseline).
MIN_RSA_BITS = 2048
#: EC curves certified: the ones TLS stacks and browsers implement (RFC 8446 §4.2.7).
SUBJECT_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_KEYS_HINT = f"use an EC P-256, P-384 or P-521 key, RSA of {MIN_RSA_BITS} bits or more, or Ed25519"
# One host name label (RFC 1123 §2.1): letters, digits, inner hyphens, at most 63.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_HOST_NAME = 253  # RFC 1035 §2.3.4, written without the trailing dot


def check_subject_key(key: CertificatePublicKeyTypes) -> None:
    """Raise InvalidRequestError unless ``key`` is one this CA certifies."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidRequestError(
                f"the CSR's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required",
                hint=_KEYS_HINT,
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in SUBJECT_CURVES:
            raise InvalidRequestError(
                f"the CSR's EC key is on curve {key.curve.name}; only P-256, P-384 and "
                "P-521 are certified",
                hint=_KEYS_HINT,
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"
    raise InvalidRequestError(f"the CSR's {kind} key is not certified", hint=_KEYS_HINT)


def _is_host_name(name: str) -> bool:
    """A DNS host name in ASCII (A-label) form; a leftmost ``*`` label is allowed."""
    if len(name) > _MAX_HOST_NAME:
        return False
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def leaf_sans(
    common_name: str | None, sans: SubjectAltNames, profile: UsageProfile
) -> SubjectAltNames:
    """The SANs a leaf carries: the CSR's, or, when it has none, its common name as a
    DNS name or IP address (as step-ca does). TLS clients (Go's crypto/x509, browsers)
    ignore the common name, so a server certificate without SANs names nobody.

    Raises InvalidRequestError when a serverAuth certificate would have no SAN because
    the common name is neither a host name nor an IP address.
    """
    if len(sans) or not common_name:
        return sans
    if "%" not in common_name:  # an IPv6 zone names an interface, not an address
        try:
            return SubjectAltNames(ips=(ipaddress.ip_address(common_name),))
        except ValueError:
            pass
    if _is_host_name(common_name):
        return SubjectAltNames(dns=(common_name,))
    if "serverAuth" not in profile.extended_key_usage:
        return sans  # a client certificate may be named by its subject alone
    raise InvalidRequestError(
        f"the CSR has no subjectAltName and its common name {common_name!r} is neither a "
        "host name nor an IP address, so TLS clients would match the certificate to no name",
        hint="put the DNS names or IP addresses in the CSR's subjectAltName extension (SAN), "
        "e.g. openssl req -addext 'subjectAltName=DNS:app.example.test'",
    )
