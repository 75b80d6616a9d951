"""The local CA's configuration: parsed from a mapping, every problem reported at once."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from certctl_core import ConfigError, ConfigProblem, Secret

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
        env = os.environ if env is None else env
        if not isinstance(data, Mapping):
            raise ConfigError([ConfigProblem("<config>", "must be a mapping")])
        p = _Parser(data)
        for key in sorted(set(map(str, data)) - _KNOWN_KEYS):
            p.problem(key, "unknown key", f"known keys: {', '.join(sorted(_KNOWN_KEYS))}")
        state_dir = p.path("state_dir", required=True)
        cert_file = p.path("ca_cert_file")
        key_file = p.path("ca_key_file")
        if (cert_file is None) != (key_file is None):
            missing = "ca_key_file" if key_file is None else "ca_cert_file"
            p.problem(missing, "ca_cert_file and ca_key_file go together", "give both or neither")
        password = _password(p, env)
        # Upper bounds keep every derived date within what X.509 and timedelta can hold.
        validity_days = p.number("validity_days", 90, 36_500)
        crl_hours = p.number("crl_validity_hours", 24, 87_600)
        ocsp_hours = p.number("ocsp_validity_hours", 1, 87_600)
        ca_name = p.text("ca_name") or "certctl local CA"
        crl_url = p.url("crl_url")
        ocsp_url = p.url("ocsp_url")
        profiles = _profiles(p, data.get("profiles"))
        strict = data.get("reject_unknown_profiles", False)
        if not isinstance(strict, bool):
            p.problem("reject_unknown_profiles", "must be true or false")
        if p.problems:
            raise ConfigError(p.problems, connector="localca")
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
            reject_unknown_profiles=bool(strict),
        )

    def profile(self, name: str) -> UsageProfile | None:
        """The usage profile for ``name``; the default one for unknown names unless strict."""
        found = self.profiles.get(name)
        if found is None and not self.reject_unknown_profiles:
            return self.profiles["default"]
        return found


@attrs.define
class _Parser:
    data: Mapping[str, Any]
    problems: list[ConfigProblem] = attrs.field(factory=list)

    def problem(self, field: str, message: str, hint: str | None = None) -> None:
        self.problems.append(ConfigProblem(field, message, hint))

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "must be a non-empty string")
            return None
        return value

    def path(self, key: str, *, required: bool = False) -> Path | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problem(key, "is required", "a directory for the ledger and CA files")
            return None
        if not isinstance(value, str | os.PathLike) or not str(value).strip():
            self.problem(key, "must be a file system path")
            return None
        path = _expand(value)
        if path is None:
            self.problem(key, f"{str(value)!r} is not a usable path (NUL byte or unknown ~user)")
        return path

    def number(self, key: str, default: float, maximum: float) -> float:
        value = self.data.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= maximum  # also refuses NaN, infinity and huge ints
        ):
            self.problem(key, f"must be a positive number of at most {maximum:g}, got {value!r}")
            return default
        return float(value)

    def url(self, key: str) -> str | None:
        value = self.text(key)
        if value is not None and not value.startswith(("http://", "https://")):
            self.problem(key, "must be an http:// or https:// URL")
            return None
        return value


_MAX_PASSWORD_FILE = 64 * 1024


def _expand(value: str | os.PathLike[str]) -> Path | None:
    """``value`` as a path with ``~`` expanded; None for a NUL byte or an unknown user."""
    if "\x00" in os.fspath(value):
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~someone who does not exist
        return None


def _password(p: _Parser, env: Mapping[str, str]) -> Secret | None:
    """The key password from ``key_password``, ``key_password_file`` or the environment."""
    inline = p.data.get("key_password")
    file = p.data.get("key_password_file")
    if inline is not None and file is not None:
        p.problem("key_password", "give key_password or key_password_file, not both")
        return None
    if inline is not None:
        value = inline.reveal() if isinstance(inline, Secret) else inline
        if not isinstance(value, str) or not value:
            p.problem("key_password", "must be a non-empty string")
            return None
        return Secret(value)
    if file is not None:
        path = _expand(file) if isinstance(file, str | os.PathLike) else None
        if path is None:
            p.problem("key_password_file", "must be a file system path")
            return None
        try:
            with path.open("rb") as handle:  # bounded: /dev/zero must not hang us
                data = handle.read(_MAX_PASSWORD_FILE + 1)
            if len(data) > _MAX_PASSWORD_FILE:
                p.problem("key_password_file", "is too large for a password")
                return None
            text = data.decode("utf-8")
        except (OSError, TypeError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "unreadable"
            p.problem("key_password_file", f"cannot be read: {reason}")
            return None
        text = text.rstrip("\r\n")
        if not text:
            p.problem("key_password_file", "is empty")
            return None
        return Secret(text)
    from_env = env.get(PASSWORD_ENV)
    if from_env:
        return Secret(from_env)
    p.problem(
        "key_password",
        "no password for the CA keys",
        f"set key_password, key_password_file, or the {PASSWORD_ENV} environment variable",
    )
    return None


def _profiles(p: _Parser, raw: Any) -> dict[str, UsageProfile]:
    profiles = dict(_BUILTIN_PROFILES)
    if raw is None:
        return profiles
    if not isinstance(raw, Mapping):
        p.problem("profiles", "must map profile names to usage settings")
        return profiles
    for name, spec in raw.items():
        field = f"profiles.{name}"
        if not isinstance(spec, Mapping):
            p.problem(field, "must be a mapping with extended_key_usage and key_usage")
            continue
        unknown = set(spec) - {"extended_key_usage", "key_usage"}
        if unknown:
            p.problem(field, f"unknown keys {sorted(map(str, unknown))}")
        eku = _names(
            p, f"{field}.extended_key_usage", spec.get("extended_key_usage"), EXTENDED_KEY_USAGES
        )
        ku = None
        if spec.get("key_usage") is not None:
            ku = _names(p, f"{field}.key_usage", spec["key_usage"], KEY_USAGES)
        if eku is not None:
            profiles[str(name)] = UsageProfile(str(name), eku, ku)
    return profiles


def _names(p: _Parser, field: str, raw: Any, allowed: Any) -> tuple[str, ...] | None:
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(n, str) for n in raw):
        p.problem(field, "must be a non-empty list of names", f"one or more of {sorted(allowed)}")
        return None
    bad = [n for n in raw if n not in allowed]
    if bad:
        p.problem(field, f"unknown names {bad}", f"use names from {sorted(allowed)}")
        return None
    return tuple(dict.fromkeys(raw))
