"""The local CA's configuration: parsed from a mapping, every problem reported at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certctl_core import ConfigReader, Secret

__all__ = [
    "EXTENDED_KEY_USAGES",
    "KEY_USAGES",
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

_KNOWN_KEYS = frozenset(
    {
        "state_dir",
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
        # Upper bounds keep every derived date within what X.509 and timedelta can hold;
        # the lower ones are a minute.
        validity_days = read.number("validity_days", 1 / 1440, 36_500, default=90)
        crl_hours = read.number("crl_validity_hours", 1 / 60, 87_600, default=24)
        ocsp_hours = read.number("ocsp_validity_hours", 1 / 60, 87_600, default=1)
        ca_name = read.text("ca_name") or "certctl local CA"
        crl_url = _url(read, "crl_url")
        ocsp_url = _url(read, "ocsp_url")
        profiles = _profiles(read, data.get("profiles"))
        strict = read.flag("reject_unknown_profiles")
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
        )

    def profile(self, name: str) -> UsageProfile | None:
        """The usage profile for ``name``; the default one for unknown names unless strict."""
        found = self.profiles.get(name)
        if found is None and not self.reject_unknown_profiles:
            return self.profiles["default"]
        return found


def _url(read: ConfigReader, key: str) -> str | None:
    value = read.text(key)
    if value is not None and not value.startswith(("http://", "https://")):
        read.problem(key, "must be an http:// or https:// URL")
        return None
    return value


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
