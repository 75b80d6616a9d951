"""The local CA's configuration: parsed from a mapping, every problem reported at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certctl_core import ConfigReader, Secret

__all__ = [
    "CA_NAME_SUFFIXES",
    "EXTENDED_KEY_USAGES",
    "KEY_USAGES",
    "MAX_CA_NAME_BYTES",
    "MAX_PASSWORD_BYTES",
    "MIN_CRL_VALIDITY_HOURS",
    "PASSWORD_ENV",
    "LocalCAConfig",
    "UsageProfile",
]

PASSWORD_ENV = "CERTCTL_LOCALCA_KEY_PASSWORD"  # noqa: S105 - a variable name

#: Key usage names a profile may list (RFC 5280 §4.2.1.3 spelling); CA bits are not allowed.
KEY_USAGES = frozenset(
    {"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement"}
)
#: Extended key usage names a profile may list (RFC 5280 §4.2.1.12 spelling).
EXTENDED_KEY_USAGES: Mapping[str, ObjectIdentifier] = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
}

#: X.509's upper bound for a common name (RFC 5280 ub-common-name), which cryptography
#: counts in UTF-8 bytes.
_MAX_COMMON_NAME = 64
#: The suffixes the CA puts after ``ca_name`` (``_pki``); the longest bounds the name.
CA_NAME_SUFFIXES = (" Root", " Intermediate", " OCSP Responder")
MAX_CA_NAME_BYTES = _MAX_COMMON_NAME - max(len(s.encode()) for s in CA_NAME_SUFFIXES)
#: OpenSSL's limit for a PEM/PKCS#8 password (PEM_BUFSIZE - 1).
MAX_PASSWORD_BYTES = 1023
#: The shortest CRL lifetime: one is re-signed at half of it, and relying parties that
#: cache a CRL until nextUpdate should not fetch it every few minutes.
MIN_CRL_VALIDITY_HOURS = 1
_URL_HINT = "give an http:// or https:// URL with a host, e.g. http://pki.example.test/ca.crl"

_KNOWN_KEYS = frozenset(
    {
        "state_dir",
        "ledger_url",
        "ca_cert_file",
        "ca_key_file",
        "key_password",
        "key_password_file",
        "ca_name",
        "validity_days",
        "crl_url",
        "ocsp_url",
        "crl_validity_hours",
        "ocsp_validity_hours",
        "profiles",
        "reject_unknown_profiles",
    }
)


@attrs.frozen
class UsageProfile:
    """Key usages of the certificates issued under one profile name.

    ``key_usage`` None means the default: digitalSignature, plus keyEncipherment when the
    subject key is RSA.
    """

    name: str
    extended_key_usage: tuple[str, ...]
    key_usage: tuple[str, ...] | None = None


_BUILTIN_PROFILES = {
    "default": UsageProfile("default", ("serverAuth", "clientAuth")),
    "tls-server": UsageProfile("tls-server", ("serverAuth", "clientAuth")),
    "tls-client": UsageProfile("tls-client", ("clientAuth",)),
}


@attrs.frozen
class LocalCAConfig:
    """A validated local CA configuration. Build it with :meth:`from_mapping`."""

    state_dir: Path
    key_password: Secret = attrs.field(repr=False)
    ca_cert_file: Path | None = None
    ca_key_file: Path | None = None
    ca_name: str = "certctl local CA"
    validity: dt.timedelta = dt.timedelta(days=90)
    crl_url: str | None = None
    ocsp_url: str | None = None
    crl_validity: dt.timedelta = dt.timedelta(hours=24)
    ocsp_validity: dt.timedelta = dt.timedelta(hours=1)
    profiles: Mapping[str, UsageProfile] = attrs.field(factory=lambda: dict(_BUILTIN_PROFILES))
    reject_unknown_profiles: bool = False
    #: PostgreSQL URL of a ledger shared by several server replicas (its password makes it
    #: a secret): the CA, the serials, revocations and CRLs live there, not in state_dir.
    ledger_url: Secret | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> LocalCAConfig:
        """Validate ``data``; raise ConfigError listing every problem found.

        ``env`` defaults to ``os.environ`` (read for ``CERTCTL_LOCALCA_KEY_PASSWORD``).
        """
        read = ConfigReader(data, env, known=_KNOWN_KEYS, connector="localca")
        state_dir = read.path(
            "state_dir", required=True, hint="a directory for the ledger and CA files"
        )
        cert_file = read.path("ca_cert_file")
        key_file = read.path("ca_key_file")
        if (cert_file is None) != (key_file is None):
            missing = "ca_key_file" if key_file is None else "ca_cert_file"
            read.problem(
                missing, "ca_cert_file and ca_key_file go together", "give both or neither"
            )
        password = read.secret(
            "key_password",
            file_key="key_password_file",
            env=PASSWORD_ENV,
            hint=f"set key_password, key_password_file, or the {PASSWORD_ENV} environment "
            "variable: it protects the CA keys",
        )
        password = _checked_password(read, password)
        # Upper bounds keep every derived date within what X.509 and timedelta can hold;
        # the lower ones are a minute, an hour for CRLs (see MIN_CRL_VALIDITY_HOURS).
        validity_days = read.number("validity_days", 1 / 1440, 36_500, default=90)
        crl_hours = read.number("crl_validity_hours", MIN_CRL_VALIDITY_HOURS, 87_600, default=24)
        ocsp_hours = read.number("ocsp_validity_hours", 1 / 60, 87_600, default=1)
        ca_name = _ca_name(read)
        crl_url = _url(read, "crl_url")
        ocsp_url = _url(read, "ocsp_url")
        profiles = _profiles(read, data.get("profiles"))
        strict = read.flag("reject_unknown_profiles")
        ledger_url = _ledger_url(read)
        read.finish()
        assert state_dir is not None and password is not None
        return cls(
            state_dir=state_dir,
            key_password=password,
            ca_cert_file=cert_file,
            ca_key_file=key_file,
            ca_name=ca_name,
            validity=dt.timedelta(days=validity_days),
            crl_url=crl_url,
            ocsp_url=ocsp_url,
            crl_validity=dt.timedelta(hours=crl_hours),
            ocsp_validity=dt.timedelta(hours=ocsp_hours),
            profiles=profiles,
            reject_unknown_profiles=strict,
            ledger_url=ledger_url,
        )

    def profile(self, name: str) -> UsageProfile | None:
        """The usage profile for ``name``; the default one for unknown names unless strict."""
        found = self.profiles.get(name)
        if found is None and not self.reject_unknown_profiles:
            return self.profiles["default"]
        return found


def _is_conninfo(text: str) -> bool:
    """A postgresql:// URL libpq can parse (checked here so that a malformed one, whose
    parse error would quote it, password and all, never reaches a driver)."""
    if not text.startswith(("postgresql://", "postgres://")):
        return False
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # the driver's absence is reported when the ledger opens
        return True
    try:
        conninfo_to_dict(text)
    except Exception:  # noqa: BLE001 - any parse failure means "not a URL"
        return False
    return True


def _ledger_url(read: ConfigReader) -> Secret | None:
    value = read.raw.get("ledger_url")
    if value is None:
        return None
    text = value.reveal() if isinstance(value, Secret) else value
    if not isinstance(text, str) or not _is_conninfo(text):
        # Never echoed: the URL may hold a password.
        read.problem(
            "ledger_url",
            "must be a PostgreSQL URL",
            "postgresql://user:password@host:5432/certctl (every replica uses the same; "
            "percent-encode special characters of the password)",
        )
        return None
    return Secret(text)


def _checked_password(read: ConfigReader, password: Secret | None) -> Secret | None:
    """``password`` if the CA key encryption can use it: UTF-8, at most 1023 bytes."""
    if password is None:
        return None
    try:
        size = len(password.reveal().encode("utf-8"))
    except UnicodeEncodeError:
        read.problem("key_password", "is not valid Unicode text (it has lone surrogates)")
        return None
    if size > MAX_PASSWORD_BYTES:
        read.problem(
            "key_password",
            f"is {size} bytes long; PEM key encryption takes at most {MAX_PASSWORD_BYTES}",
            "use a shorter password (32 random characters are plenty)",
        )
        return None
    return password


def _ca_name(read: ConfigReader) -> str:
    """``ca_name``: printable, and short enough for every subject the CA derives from it."""
    default = "certctl local CA"
    name = read.text("ca_name")
    if name is None:
        return default
    if not all(ch.isprintable() for ch in name):
        read.problem(
            "ca_name",
            "contains control or other non-printable characters",
            "use letters, digits, spaces and punctuation only",
        )
        return default
    size = len(name.encode("utf-8"))
    if size > MAX_CA_NAME_BYTES:
        read.problem(
            "ca_name",
            f"is {size} bytes of UTF-8; at most {MAX_CA_NAME_BYTES} fit, since the CA "
            f"appends up to {_MAX_COMMON_NAME - MAX_CA_NAME_BYTES} (' OCSP Responder') "
            f"within X.509's {_MAX_COMMON_NAME}-byte common name",
            f"shorten ca_name to {MAX_CA_NAME_BYTES} bytes (ASCII characters) or fewer",
        )
        return default
    return name


def _url(read: ConfigReader, key: str) -> str | None:
    """An http(s) URL with a host, as it goes into certificates (an IA5String: ASCII)."""
    url = read.text(key)
    if url is None:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        read.problem(key, "contains white space or control characters", _URL_HINT)
        return None
    if not url.isascii():
        read.problem(
            key,
            f"{url!r} is not ASCII",
            "write the host in punycode (xn--...) and percent-encode the path",
        )
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as exc:
        read.problem(key, f"{url!r} is not a valid URL: {exc}", _URL_HINT)
        return None
    if parts.username is not None or parts.password is not None:
        # Never echo it: the user info may be a password.
        read.problem(
            key,
            "carries user info (user:password@), which every certificate would publish",
            "remove everything between '//' and '@'",
        )
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or port == 0:
        read.problem(key, f"{url!r} is not an http:// or https:// URL with a host", _URL_HINT)
        return None
    return url


def _profiles(read: ConfigReader, raw: Any) -> dict[str, UsageProfile]:
    profiles = dict(_BUILTIN_PROFILES)
    if raw is None:
        return profiles
    if not isinstance(raw, Mapping):
        read.problem("profiles", "must map profile names to usage settings")
        return profiles
    for name, spec in raw.items():
        field = f"profiles.{name}"
        if not isinstance(spec, Mapping):
            read.problem(field, "must be a mapping with extended_key_usage and key_usage")
            continue
        read.check_keys(spec, ("extended_key_usage", "key_usage"), prefix=f"{field}.")
        eku = _names(
            read, f"{field}.extended_key_usage", spec.get("extended_key_usage"), EXTENDED_KEY_USAGES
        )
        ku = None
        if spec.get("key_usage") is not None:
            ku = _names(read, f"{field}.key_usage", spec["key_usage"], KEY_USAGES)
        if eku is not None:
            profiles[str(name)] = UsageProfile(str(name), eku, ku)
    return profiles


def _names(read: ConfigReader, field: str, raw: Any, allowed: Any) -> tuple[str, ...] | None:
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(n, str) for n in raw):
        read.problem(
            field, "must be a non-empty list of names", f"one or more of {sorted(allowed)}"
        )
        return None
    bad = [n for n in raw if n not in allowed]
    if bad:
        read.problem(field, f"unknown names {bad}", f"use names from {sorted(allowed)}")
        return None
    return tuple(dict.fromkeys(raw))
