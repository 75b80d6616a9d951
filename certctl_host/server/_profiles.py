"""Stored certificate profiles: the policy a named profile applies on issuance.

A profile is stored by name (``PUT /api/v1/profiles/{name}``) as a small JSON document::

    {"max_ttl_seconds": 2592000,
     "key_types": ["ec-p256", "ec-p384", "rsa-2048+"],
     "ekus": ["serverAuth"]}

Every field is optional; a profile with none only names what the connector gets (the Local
CA picks its usage profile by that name, for instance).

* ``max_ttl_seconds``: an integer number of seconds, 1 to 10 years. It becomes the
  request's :attr:`certctl_core.Profile.max_ttl`, so the registry caps the validity and
  refuses a certificate that outlives it, whatever the connector.
* ``key_types``: the CSR's public key must be one of :data:`KEY_TYPES`. ``rsa-N+`` means
  an RSA modulus of at least N bits. Checked before the CA is asked.
* ``ekus``: the extended key usages the certificate may carry, by RFC 5280 name
  (:data:`EKUS`) or dotted OID. The domain :class:`~certctl_core.Profile` has no EKU field,
  so a connector cannot be told which EKUs to set (it maps the profile name to its own
  template). The server checks the issued leaf instead: an EKU outside the list, or no EKU
  extension at all (which means any purpose), is a PolicyViolationError (422) and the
  certificate is neither recorded nor returned.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection, Mapping
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl_core import ConfigReader
from certctl_core.domain import CertificateRequest, Profile
from certctl_core.errors import InvalidRequestError, PolicyViolationError

__all__ = [
    "DEFAULT_PROFILE",
    "EKUS",
    "KEY_TYPES",
    "MAX_TTL_SECONDS",
    "PROFILE_NAME",
    "StoredProfile",
    "UnknownProfileError",
    "key_type_of",
]

#: Profile names: as issuer ids, 1-64 letters, digits, '.', '-', '_', starting with a
#: letter or digit.
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The profile of a request that names none. Without a stored profile of this name it caps
#: nothing (as before profiles were stored); a stored one applies to such requests.
DEFAULT_PROFILE = Profile().name
#: The longest max TTL a profile may set: 10 years, as the API's validity_seconds.
MAX_TTL_SECONDS = 3650 * 86400
#: The key types a profile may allow. ``rsa-N+``: an RSA modulus of N bits or more.
KEY_TYPES = (
    "ec-p256",
    "ec-p384",
    "ec-p521",
    "ed25519",
    "ed448",
    "rsa-2048+",
    "rsa-3072+",
    "rsa-4096+",
)
#: Extended key usages by their RFC 5280 names.
EKUS: Mapping[str, x509.ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
_EKU_NAMES = {oid.dotted_string: name for name, oid in EKUS.items()}
_DOTTED_OID = re.compile(r"[0-2](\.[0-9]+)+")
_FIELDS = ("max_ttl_seconds", "key_types", "ekus")
_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


class UnknownProfileError(InvalidRequestError):
    """An issuance named a profile that is not stored (422)."""

    def __init__(self, name: str, known: Collection[str], *, issuer_id: str | None) -> None:
        listed = ", ".join(known) if known else "none"
        super().__init__(
            f"no profile {name!r} is stored",
            issuer_id=issuer_id,
            hint=f"known profiles: {listed}; PUT /api/v1/profiles/{{name}} to add one, or "
            "leave profile out for the default",
        )
        self.profile = name
        self.known = tuple(known)


def key_type_of(key: CertificatePublicKeyTypes) -> str:
    """A public key's type in the :data:`KEY_TYPES` vocabulary (``rsa-<bits>`` for RSA;
    another curve or algorithm gets a descriptive name that no profile can allow)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name, f"ec-{key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"dsa-{key.key_size}"
    return type(key).__name__


def _allows(allowed: str, actual: str) -> bool:
    if allowed.endswith("+") and allowed.startswith("rsa-") and actual.startswith("rsa-"):
        return int(actual.removeprefix("rsa-")) >= int(allowed[4:-1])
    return allowed == actual


def _names(read: ConfigReader, key: str, valid: Collection[str], *, oids: bool) -> tuple[str, ...]:
    """A non-empty list of names from ``valid`` (or dotted OIDs when ``oids``), without
    repeats; every bad entry is a problem. An absent key is the empty tuple."""
    raw = read.raw.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        read.problem(key, "must be a non-empty list", f"leave {key} out to allow any")
        return ()
    found: list[str] = []
    for index, item in enumerate(raw):
        field = f"{key}[{index}]"
        if not isinstance(item, str):
            read.problem(field, f"must be a string, got {type(item).__name__}")
            continue
        if item in valid:
            name = item
        elif oids and _DOTTED_OID.fullmatch(item) and _oid(item) is not None:
            name = _EKU_NAMES.get(item, item)
        else:
            close = difflib.get_close_matches(item, list(valid), n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            hint = hint or f"known: {', '.join(valid)}" + (" or a dotted OID" if oids else "")
            read.problem(field, f"{item!r} is not a known value", hint)
            continue
        if name not in found:
            found.append(name)
    return tuple(found)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _oid(text: str) -> x509.ObjectIdentifier | None:
    try:
        return x509.ObjectIdentifier(text)
    except ValueError:
        return None


@attrs.frozen
class StoredProfile:
    """A validated stored profile. Build it with :meth:`from_doc`."""

    name: str
    max_ttl: dt.timedelta | None = None
    #: Allowed key types (:data:`KEY_TYPES`); empty: any.
    key_types: tuple[str, ...] = ()
    #: Allowed EKUs, names of :data:`EKUS` or dotted OIDs; empty: any.
    ekus: tuple[str, ...] = ()

    @classmethod
    def from_doc(cls, name: str, doc: Mapping[str, Any]) -> StoredProfile:
        """Validate a profile document; one ConfigError lists every problem (an unknown
        field with a did-you-mean hint, a bad name, each bad list entry)."""
        read = ConfigReader(doc, {}, known=_FIELDS)
        if not PROFILE_NAME.fullmatch(name):
            read.problem(
                "name",
                "must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit",
            )
        ttl = None
        raw_ttl = doc.get("max_ttl_seconds")
        if raw_ttl is not None and not _is_number(raw_ttl):
            # Not ConfigReader's string parsing: the API takes JSON numbers only.
            read.problem("max_ttl_seconds", f"must be an integer, got {type(raw_ttl).__name__}")
        else:
            seconds = read.number("max_ttl_seconds", 1, MAX_TTL_SECONDS, integer=True)
            ttl = None if seconds is None else dt.timedelta(seconds=seconds)
        key_types = _names(read, "key_types", KEY_TYPES, oids=False)
        ekus = _names(read, "ekus", tuple(EKUS), oids=True)
        read.finish()
        return cls(name, ttl, key_types, ekus)

    def as_doc(self) -> dict[str, Any]:
        """The canonical document (what the store keeps and the API shows)."""
        doc: dict[str, Any] = {}
        if self.max_ttl is not None:
            doc["max_ttl_seconds"] = int(self.max_ttl.total_seconds())
        if self.key_types:
            doc["key_types"] = list(self.key_types)
        if self.ekus:
            doc["ekus"] = list(self.ekus)
        return doc

    def apply(self, request: CertificateRequest, *, issuer_id: str) -> CertificateRequest:
        """The request under this profile: its max TTL (tightened, never loosened, by an
        inline ``max_ttl_seconds``); refused when the CSR's key type is not allowed."""
        if self.key_types:
            actual = key_type_of(request.csr.public_key())
            if not any(_allows(allowed, actual) for allowed in self.key_types):
                raise PolicyViolationError(
                    f"the CSR's key is {actual}; profile {self.name!r} allows "
                    f"{', '.join(self.key_types)}",
                    issuer_id=issuer_id,
                    hint="generate the key and CSR with an allowed key type",
                )
        caps = [c for c in (self.max_ttl, request.profile.max_ttl) if c is not None]
        profile = Profile(self.name, min(caps) if caps else None)
        return attrs.evolve(request, profile=profile)

    def check_issued(self, certificate: x509.Certificate, *, issuer_id: str) -> None:
        """Refuse a leaf whose EKUs are not all allowed by this profile (PolicyViolationError)."""
        if not self.ekus:
            return
        allowed = {EKUS[e].dotted_string if e in EKUS else e for e in self.ekus}
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            found = None
        else:
            found = [oid.dotted_string for oid in usages]
        if found is not None:
            extra = [_EKU_NAMES.get(oid, oid) for oid in found if oid not in allowed]
            if not extra:
                return
            what = f"extended key usages {', '.join(extra)}"
        else:
            what = "no extended key usage extension (valid for any purpose)"
        raise PolicyViolationError(
            f"the CA returned a certificate with {what}; profile {self.name!r} allows "
            f"only {', '.join(self.ekus)}. It was not recorded and is not returned",
            issuer_id=issuer_id,
            hint="configure the CA to issue this profile with the allowed EKUs (the Local "
            "CA's 'profiles' setting by this profile name, the step-ca provisioner's "
            "template), or widen the profile's ekus",
        )
