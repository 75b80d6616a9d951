"""Domain values: what is asked of a CA and what it gives back.

Values are immutable (``attrs.frozen``), built through named constructors
(``from_pem``, ``from_der``, ``from_mapping``) and never do I/O. Parsing failures raise
:class:`~certctl_core.errors.InvalidRequestError` or
:class:`~certctl_core.errors.InvalidResponseError`, never ``ValueError``.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from certctl_core.errors import InvalidRequestError, InvalidResponseError

__all__ = [
    "MAX_CSR_BYTES",
    "MAX_SANS",
    "Capabilities",
    "CertificateRequest",
    "CertificateStatus",
    "HealthCheck",
    "HealthReport",
    "IssuedCertificate",
    "Profile",
    "Revocation",
    "RevocationReason",
    "Secret",
    "SubjectAltNames",
    "format_serial_hex",
    "parse_serial",
    "public_key_der",
]

#: Largest CSR we parse (PEM or DER). Real CSRs are a few KiB; this bounds hostile input.
MAX_CSR_BYTES = 64 * 1024
#: Most SAN entries one request may carry.
MAX_SANS = 256
#: RFC 5280 §4.1.2.2: a serial is a positive integer of at most 20 octets.
MAX_SERIAL = (1 << 159) - 1


@attrs.frozen(repr=False)
class Secret:
    """A string that must never be shown: ``repr`` and ``str`` mask it.

    Call :meth:`reveal` at the one place the plain value is needed.
    """

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class RevocationReason(enum.IntEnum):
    """RFC 5280 §5.3.1 CRLReason codes (7 is unused by the RFC)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def rfc_name(self) -> str:
        """The RFC 5280 spelling, e.g. ``keyCompromise`` or ``cACompromise``."""
        return _RFC_NAMES[self]

    @property
    def x509_flag(self) -> x509.ReasonFlags:
        return _REASON_FLAGS[self]

    @classmethod
    def parse(cls, value: str | int) -> RevocationReason:
        """Accept a code (``1``), an RFC name (``keyCompromise``) or ``key-compromise``.

        Raises InvalidRequestError naming the accepted spellings.
        """
        if isinstance(value, bool):
            pass  # a JSON true is no reason code
        elif isinstance(value, int) or (isinstance(value, str) and _DIGITS.match(value.strip())):
            try:
                return cls(int(value))
            except ValueError:
                pass
        elif isinstance(value, str):
            key = re.sub(r"[^a-z]", "", value.lower())
            for reason in cls:
                if key in (reason.name.lower().replace("_", ""), reason.rfc_name.lower()):
                    return reason
        names = ", ".join(f"{r.rfc_name} ({r.value})" for r in cls)
        raise InvalidRequestError(
            f"unknown revocation reason {value!r}",
            hint=f"use one of the RFC 5280 reasons: {names}",
        )


_RFC_NAMES: dict[RevocationReason, str] = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "keyCompromise",
    RevocationReason.CA_COMPROMISE: "cACompromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    RevocationReason.CERTIFICATE_HOLD: "certificateHold",
    RevocationReason.REMOVE_FROM_CRL: "removeFromCRL",
    RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
    RevocationReason.AA_COMPROMISE: "aACompromise",
}

_REASON_FLAGS: dict[RevocationReason, x509.ReasonFlags] = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.REMOVE_FROM_CRL: x509.ReasonFlags.remove_from_crl,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}


_DIGITS = re.compile(r"\A[0-9]{1,64}\Z")
_HEX = re.compile(r"\A[0-9a-f]{1,80}\Z")


def parse_serial(text: str | int) -> int:
    """Parse a certificate serial: an int, decimal digits, or hex (``0x..`` or ``aa:bb``).

    Bare digits are read as decimal; write hex with ``0x`` or colons. Raises
    InvalidRequestError for anything that is not a positive serial of at most 20 octets.
    """
    value: int | None = None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and len(text) <= 128:
        raw = text.strip().lower()
        if raw.startswith("0x") and _HEX.match(raw[2:]):
            value = int(raw[2:], 16)
        elif ":" in raw and _HEX.match(raw.replace(":", "")):
            value = int(raw.replace(":", ""), 16)
        elif _DIGITS.match(raw):
            value = int(raw, 10)
    if value is None or not 0 < value <= MAX_SERIAL:
        raise InvalidRequestError(
            f"{text!r} is not a certificate serial number",
            hint="give a positive serial of at most 20 octets: decimal digits, or hex "
            "written as 0x1f2e... or 1f:2e:...",
        )
    return value


def format_serial_hex(serial: int) -> str:
    """Lower-case hex with an even number of digits, no prefix."""
    digits = f"{serial:x}"
    return digits if len(digits) % 2 == 0 else "0" + digits


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER of a public key: the form to compare keys by."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@attrs.frozen
class SubjectAltNames:
    """The four SAN types a certificate request can carry."""

    dns: tuple[str, ...] = ()
    ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()

    @classmethod
    def from_extension(cls, ext: x509.SubjectAlternativeName) -> SubjectAltNames:
        return cls(
            dns=tuple(ext.get_values_for_type(x509.DNSName)),
            ips=tuple(
                ip
                for ip in ext.get_values_for_type(x509.IPAddress)
                if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
            ),
            emails=tuple(ext.get_values_for_type(x509.RFC822Name)),
            uris=tuple(ext.get_values_for_type(x509.UniformResourceIdentifier)),
        )

    @classmethod
    def of(cls, obj: x509.Certificate | x509.CertificateSigningRequest) -> SubjectAltNames:
        """The SANs of a certificate or CSR (empty when it has none)."""
        try:
            ext = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return cls()
        return cls.from_extension(ext.value)

    def __len__(self) -> int:
        return len(self.dns) + len(self.ips) + len(self.emails) + len(self.uris)

    def as_strings(self) -> list[str]:
        """Every SAN as a plain string, in type order (DNS, IP, email, URI)."""
        return [*self.dns, *(str(ip) for ip in self.ips), *self.emails, *self.uris]

    def same_as(self, other: SubjectAltNames) -> bool:
        """Set equality per type (order and duplicates do not matter; DNS case-insensitive)."""
        return (
            {d.lower() for d in self.dns} == {d.lower() for d in other.dns}
            and set(self.ips) == set(other.ips)
            and set(self.emails) == set(other.emails)
            and set(self.uris) == set(other.uris)
        )

    def to_general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ip) for ip in self.ips]
        names += [x509.RFC822Name(e) for e in self.emails]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        return names


@attrs.frozen
class Profile:
    """A certificate profile: the policy the core applies around every issuance.

    ``max_ttl`` caps the certificate's lifetime whatever the CA would grant.
    """

    name: str = "default"
    max_ttl: dt.timedelta | None = attrs.field(default=None)

    @max_ttl.validator
    def _check_ttl(self, _attr: attrs.Attribute[Any], value: dt.timedelta | None) -> None:
        if value is not None and value <= dt.timedelta(0):
            raise InvalidRequestError(
                f"profile {self.name!r}: max_ttl must be positive, got {value}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Profile:
        """Build from ``{"name": ..., "max_ttl_seconds": ...}``."""
        name = data.get("name", "default")
        seconds = data.get("max_ttl_seconds")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("profile name must be a non-empty string")
        if seconds is None:
            return cls(name=name)
        ttl = None
        if not isinstance(seconds, bool) and isinstance(seconds, int | float):
            try:
                ttl = dt.timedelta(seconds=seconds) if seconds > 0 else None
            except (OverflowError, ValueError):
                ttl = None
        if ttl is None:
            raise InvalidRequestError(
                f"profile {name!r}: max_ttl_seconds must be a positive, finite number"
            )
        return cls(name=name, max_ttl=ttl)


def _ascii(text: bytes | str, error: type[InvalidRequestError | InvalidResponseError]) -> bytes:
    """PEM text as bytes; PEM is ASCII, so anything else is refused as ``error``."""
    if isinstance(text, bytes):
        return text
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise error("PEM text must be ASCII") from None


def _load_csr(data: bytes) -> x509.CertificateSigningRequest:
    if len(data) > MAX_CSR_BYTES:
        raise InvalidRequestError(
            f"CSR is {len(data)} bytes, more than the {MAX_CSR_BYTES} bytes accepted"
        )
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion: not a ValueError
        raise InvalidRequestError(
            "the CSR could not be parsed",
            hint="pass a PKCS#10 certificate signing request in PEM "
            "('-----BEGIN CERTIFICATE REQUEST-----') or DER form",
        ) from exc


@attrs.frozen
class CertificateRequest:
    """A request to issue: a parsed CSR, the profile, and an optional wanted lifetime.

    ``validity`` is what the caller asks for; ``None`` means "the connector's default".
    The registry caps it by ``profile.max_ttl`` before the connector sees it.

    Building one checks the CSR, once: its signature verifies, its public key is usable,
    it names a subject (a common name or SANs) and has at most :data:`MAX_SANS` SANs.
    Otherwise InvalidRequestError says what is wrong. Connectors and the registry rely
    on that and do not check again; ``attrs.evolve`` with the same CSR does not re-check.
    """

    csr: x509.CertificateSigningRequest = attrs.field(repr=False)
    profile: Profile = Profile()
    validity: dt.timedelta | None = None
    #: The certificate this one replaces (a renewal): an ACME connector names it in the
    #: order (``replaces``, RFC 9773); other connectors ignore it.
    replaces: x509.Certificate | None = attrs.field(default=None, repr=False, kw_only=True)
    #: What checking the CSR found, filled on construction and carried by evolve.
    _checked: _CheckedCSR | None = attrs.field(
        default=None, repr=False, eq=False, alias="_checked", kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        if self._checked is None or self._checked.csr is not self.csr:
            object.__setattr__(self, "_checked", _checked_csr(self.csr))

    @classmethod
    def from_pem(
        cls,
        pem: bytes | str,
        *,
        profile: Profile | None = None,
        validity: dt.timedelta | None = None,
    ) -> CertificateRequest:
        return cls(_load_csr(_ascii(pem, InvalidRequestError)), profile or Profile(), validity)

    from_der = from_pem  # _load_csr tells the two forms apart

    @classmethod
    def from_csr(
        cls,
        csr: x509.CertificateSigningRequest,
        *,
        profile: Profile | None = None,
        validity: dt.timedelta | None = None,
    ) -> CertificateRequest:
        return cls(csr, profile or Profile(), validity)

    def effective_validity(self, default: dt.timedelta) -> dt.timedelta:
        """The lifetime to ask the CA for: ``validity`` or the connector's ``default``,
        never more than ``profile.max_ttl``."""
        wanted = self.validity if self.validity is not None else default
        cap = self.profile.max_ttl
        return min(wanted, cap) if cap is not None else wanted

    @property
    def csr_pem(self) -> str:
        return self.csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def sans(self) -> SubjectAltNames:
        """The CSR's subjectAltNames (parsed once, when the request was built)."""
        assert self._checked is not None  # set by __attrs_post_init__
        return self._checked.sans

    @property
    def common_name(self) -> str | None:
        assert self._checked is not None
        return self._checked.common_name

    def public_key_der(self) -> bytes:
        """The CSR's SubjectPublicKeyInfo, DER (computed once, when the request was built)."""
        assert self._checked is not None
        return self._checked.public_key_der


@attrs.frozen
class _CheckedCSR:
    csr: x509.CertificateSigningRequest
    public_key_der: bytes
    sans: SubjectAltNames
    common_name: str | None


def _sans_of(csr: x509.CertificateSigningRequest) -> SubjectAltNames:
    try:
        return SubjectAltNames.of(csr)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError("the CSR's subjectAltName extension is malformed") from exc


def _common_name_of(csr: x509.CertificateSigningRequest) -> str | None:
    try:
        attrs_ = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise InvalidRequestError("the CSR's subject is malformed") from exc
    if not attrs_:
        return None
    value = attrs_[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _checked_csr(csr: x509.CertificateSigningRequest) -> _CheckedCSR:
    """Check a CSR once (see :class:`CertificateRequest`); keep what the check parsed."""
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # cryptography raises several types for odd keys
        raise InvalidRequestError(
            "the CSR's signature could not be checked (unsupported key or algorithm)"
        ) from exc
    if not valid:
        raise InvalidRequestError(
            "the CSR's signature does not verify",
            hint="the CSR was altered after signing or signed with another key; generate it again",
        )
    try:
        spki = public_key_der(csr.public_key())
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError("the CSR's public key is unsupported or malformed") from exc
    sans = _sans_of(csr)
    if len(sans) > MAX_SANS:
        raise InvalidRequestError(
            f"the CSR has {len(sans)} SANs, more than the {MAX_SANS} accepted"
        )
    common_name = _common_name_of(csr)
    if not len(sans) and not common_name:
        raise InvalidRequestError(
            "the CSR has neither a common name nor subjectAltNames",
            hint="put the DNS names, IPs, emails or URIs to certify in the CSR",
        )
    return _CheckedCSR(csr, spki, sans, common_name)


def _ensure_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@attrs.frozen
class IssuedCertificate:
    """An issued certificate: the leaf and the full chain (leaf first, root excluded)."""

    certificate: x509.Certificate = attrs.field(repr=False)
    chain: tuple[x509.Certificate, ...] = attrs.field(repr=False)

    @classmethod
    def from_pem_chain(cls, pem: bytes | str) -> IssuedCertificate:
        """Parse a PEM bundle whose first certificate is the leaf."""
        data = _ascii(pem, InvalidResponseError)
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidResponseError("the certificate chain is not valid PEM") from exc
        return cls.from_certificates(certs)

    @classmethod
    def from_certificates(cls, certs: Iterable[x509.Certificate]) -> IssuedCertificate:
        chain = tuple(certs)
        if not chain:
            raise InvalidResponseError("the certificate chain is empty")
        return cls(chain[0], chain)

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def serial_hex(self) -> str:
        return format_serial_hex(self.serial)

    @property
    def serial_decimal(self) -> str:
        return str(self.serial)

    @property
    def not_before(self) -> dt.datetime:
        return _ensure_utc(self.certificate.not_valid_before_utc)

    @property
    def not_after(self) -> dt.datetime:
        return _ensure_utc(self.certificate.not_valid_after_utc)

    @property
    def sans(self) -> SubjectAltNames:
        return SubjectAltNames.of(self.certificate)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def chain_pem(self) -> str:
        return "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in self.chain
        )

    def __repr__(self) -> str:
        return (
            f"IssuedCertificate(serial=0x{self.serial_hex}, "
            f"subject={self.certificate.subject.rfc4514_string()!r}, "
            f"not_after={self.not_after.isoformat()})"
        )


@attrs.frozen
class Revocation:
    """The outcome of a revoke: ``already_revoked`` when the CA had revoked it before."""

    serial: int
    reason: RevocationReason
    already_revoked: bool = False
    revoked_at: dt.datetime | None = None


@attrs.frozen
class CertificateStatus:
    """Revocation status of one serial, as a CRL or OCSP responder would state it."""

    serial: int
    state: Literal["good", "revoked", "unknown"]
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None


@attrs.frozen
class Capabilities:
    """The optional operations a connector offers.

    ``crl``: ``crl()`` returns a signed DER CRL. ``ocsp``: ``ocsp(request_der)`` returns
    a signed DER OCSP response. ``status``: ``status(serial)`` reports revocation status.
    ``renewal_info``: ``renewal_info(certificate)`` returns the CA's suggested
    :class:`RenewalWindow` (ACME Renewal Information, RFC 9773).
    Calling an operation whose flag is false raises UnsupportedCapabilityError.
    """

    crl: bool = False
    ocsp: bool = False
    status: bool = False
    renewal_info: bool = False

    def names(self) -> tuple[str, ...]:
        names = ("crl", "ocsp", "status", "renewal_info")
        return tuple(name for name in names if getattr(self, name))


@attrs.frozen
class RenewalWindow:
    """When the CA suggests renewing a certificate (RFC 9773 ``suggestedWindow``).

    ``start`` <= ``end``, both aware UTC. ``explanation_url`` is the CA's page about why
    (e.g. a mass revocation), when it gives one; ``retry_after`` is how many seconds the
    CA asks a client to wait before asking again, when it says so.
    """

    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None = None
    retry_after: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("RenewalWindow times must be timezone-aware")
        if self.end < self.start:
            raise ValueError("RenewalWindow ends before it starts")


@attrs.frozen
class HealthCheck:
    """One line of a diagnosis: ``ok`` is None for information that passes or fails nothing."""

    name: str
    ok: bool | None
    detail: str


@attrs.frozen
class HealthReport:
    """A connector's diagnosis of itself and its CA."""

    checks: tuple[HealthCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok is not False for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }
