"""Configuration of the step-ca connector: parsed once, every problem reported at once.

Keys (all strings unless said otherwise), with the environment variable that supplies
each when the key is absent. Explicit config always wins over the environment.

==========================  ==================================  ===========================
key                         environment                         meaning
==========================  ==================================  ===========================
``ca_url``                  ``CERTCTL_STEPCA_URL``              ``https://host:port`` of step-ca
``provisioner_name``        ``CERTCTL_STEPCA_PROVISIONER``      JWK provisioner name
``provisioner_key_path``    ``CERTCTL_STEPCA_KEY_PATH``         encrypted provisioner JWK file
``provisioner_password``    ``CERTCTL_STEPCA_PASSWORD``         its password
``provisioner_password_file`` ``CERTCTL_STEPCA_PASSWORD_FILE``  file holding the password
``root_cert_path``          ``CERTCTL_STEPCA_ROOT``             PEM root to trust (only it);
                            or ``CERTCTL_STEPCA_ROOT_CERT``     (certctl-server's name) when
                                                                ``..._ROOT`` is unset
``root_fingerprint``        ``CERTCTL_STEPCA_ROOT_FINGERPRINT`` SHA-256 of the root, hex
``validity_days``           ``CERTCTL_STEPCA_VALIDITY_DAYS``    default lifetime (number)
``timeout_seconds``         --                                  per request (default 10)
``max_retries``             --                                  transient retries (default 2)
``token_lifetime_seconds``  --                                  one-time token life (300)
``max_response_bytes``      --                                  largest CA answer (1 MiB)
``max_connections``         --                                  connection pool size (16)
``crl_enabled``             ``CERTCTL_STEPCA_CRL_ENABLED``      step-ca publishes a CRL (false)
==========================  ==================================  ===========================

Exactly one of ``provisioner_password`` / ``provisioner_password_file`` and at least one
of ``root_cert_path`` / ``root_fingerprint`` is required. These two pairs are each one
setting: naming either member in the config ignores both members' environment
variables. A password file's trailing newline is removed (``echo`` adds one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from certctl_core import ConfigReader, Secret

__all__ = [
    "CONNECTOR_NAME",
    "ENV",
    "KEYS",
    "ROOT_CERT_ENV",
    "StepCAConfig",
    "claim_duration",
    "parse_go_duration",
]

CONNECTOR_NAME = "stepca"

#: config key -> environment variable consulted when the key is absent
ENV = {
    "ca_url": "CERTCTL_STEPCA_URL",
    "provisioner_name": "CERTCTL_STEPCA_PROVISIONER",
    "provisioner_key_path": "CERTCTL_STEPCA_KEY_PATH",
    "provisioner_password": "CERTCTL_STEPCA_PASSWORD",
    "provisioner_password_file": "CERTCTL_STEPCA_PASSWORD_FILE",
    "root_cert_path": "CERTCTL_STEPCA_ROOT",
    "root_fingerprint": "CERTCTL_STEPCA_ROOT_FINGERPRINT",
    "validity_days": "CERTCTL_STEPCA_VALIDITY_DAYS",
    "crl_enabled": "CERTCTL_STEPCA_CRL_ENABLED",
}
#: certctl-server's name for the root; read for ``root_cert_path`` when ``ENV``'s is unset.
ROOT_CERT_ENV = "CERTCTL_STEPCA_ROOT_CERT"
_NUMBERS: dict[str, tuple[float | None, float, float]] = {
    "timeout_seconds": (10.0, 0.1, 600.0),
    "max_retries": (2, 0, 10),
    "token_lifetime_seconds": (300, 30, 3600),
    "max_response_bytes": (1 << 20, 16 << 10, 64 << 20),
    "max_connections": (16, 1, 1024),
    "validity_days": (None, 1 / 1440, 3650),
}
_INTEGERS = frozenset({"max_retries", "token_lifetime_seconds", "max_response_bytes"})
_INTEGERS |= {"max_connections"}
#: Every setting the connector knows.
KEYS = frozenset(ENV) | frozenset(_NUMBERS)
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_URL_HINT = "use the address step-ca listens on, e.g. https://ca.internal:9000"
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
# Go's time.Duration is an int64 of nanoseconds: about 292 years either way.
_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


@attrs.frozen
class StepCAConfig:
    """A validated step-ca connector configuration (secrets masked in ``repr``)."""

    ca_url: str
    provisioner_name: str
    provisioner_key_path: Path
    provisioner_password: Secret
    root_cert_path: Path | None
    root_fingerprint: str | None
    validity: dt.timedelta | None
    timeout_seconds: float = 10.0
    max_retries: int = 2
    token_lifetime_seconds: int = 300
    max_response_bytes: int = 1 << 20
    max_connections: int = 16
    crl_enabled: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.ca_url).netloc

    def audience(self, endpoint: str) -> str:
        """The token audience step-ca expects for ``endpoint`` ("sign" or "revoke")."""
        return f"https://{self.host}/1.0/{endpoint}"

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        issuer_id: str | None = None,
    ) -> StepCAConfig:
        """Validate ``raw`` (falling back to ``env``, default ``os.environ``).

        Raises ConfigError listing every problem, each with a fix hint. Reads the
        password file and checks that the other files exist; does not contact the CA.
        """
        read = ConfigReader(raw, env, known=KEYS, connector=CONNECTOR_NAME, issuer_id=issuer_id)
        ca_url = read.text("ca_url", env=ENV["ca_url"], required=True)
        ca_url = None if ca_url is None else _check_url(ca_url, read)
        name = read.text("provisioner_name", env=ENV["provisioner_name"], required=True)
        key_path = read.path("provisioner_key_path", env=ENV["provisioner_key_path"], required=True)
        if key_path is not None and not os.path.isfile(key_path):  # False for ENAMETOOLONG
            read.problem(
                "provisioner_key_path",
                f"{key_path} is not a readable file",
                "point it at the provisioner's encrypted JWK (the JSON or compact JWE "
                "that 'step crypto jwk create' wrote)",
            )
        password = read.secret(
            "provisioner_password",
            file_key="provisioner_password_file",
            env=ENV["provisioner_password"],
            file_env=ENV["provisioner_password_file"],
            hint="set provisioner_password_file (preferred) or provisioner_password, or "
            "CERTCTL_STEPCA_PASSWORD_FILE / CERTCTL_STEPCA_PASSWORD: it decrypts the "
            "provisioner key",
        )
        # The two trust anchors are one setting: naming either ignores both variables.
        roots_set = any(raw.get(key) is not None for key in ("root_cert_path", "root_fingerprint"))
        environ = os.environ if env is None else env
        root_env = None
        if not roots_set:
            named = (environ.get(ENV["root_cert_path"]) or "").strip()
            root_env = ENV["root_cert_path"] if named else ROOT_CERT_ENV
        root_path = read.path("root_cert_path", env=root_env)
        if root_path is not None and not os.path.isfile(root_path):
            read.problem(
                "root_cert_path",
                f"{root_path} is not a readable file",
                "point it at step-ca's root_ca.crt, or pin root_fingerprint instead",
            )
        fingerprint = read.text(
            "root_fingerprint", env=None if roots_set else ENV["root_fingerprint"]
        )
        if fingerprint is not None:
            fingerprint = fingerprint.strip().lower().replace(":", "")
            if not _FINGERPRINT.fullmatch(fingerprint):
                read.problem(
                    "root_fingerprint",
                    "must be the SHA-256 of the root certificate: 64 hex digits",
                    "'step certificate fingerprint root_ca.crt' prints it",
                )
        if fingerprint is None and read.value("root_cert_path", root_env) is None:
            read.problem(
                "root_cert_path",
                "no trust anchor: the CA's TLS certificate cannot be verified",
                "set root_cert_path (or CERTCTL_STEPCA_ROOT / CERTCTL_STEPCA_ROOT_CERT) to "
                "step-ca's root_ca.crt, or "
                "root_fingerprint to its SHA-256; the system trust store is never used",
            )
        numbers: dict[str, Any] = {
            key: read.number(
                key, low, high, default=default, integer=key in _INTEGERS, env=ENV.get(key)
            )
            for key, (default, low, high) in _NUMBERS.items()
        }
        validity_days = numbers.pop("validity_days")
        crl_enabled = read.flag("crl_enabled", env=ENV["crl_enabled"])
        read.finish()
        assert ca_url and name and key_path and password  # no problems, so all were found
        return cls(
            ca_url=ca_url,
            provisioner_name=name,
            provisioner_key_path=key_path,
            provisioner_password=password,
            root_cert_path=root_path,
            root_fingerprint=fingerprint,
            validity=dt.timedelta(days=validity_days) if validity_days else None,
            crl_enabled=crl_enabled,
            **numbers,
        )


def _check_url(url: str, read: ConfigReader) -> str | None:
    url = url.strip().rstrip("/")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        read.problem("ca_url", "contains white space or control characters", _URL_HINT)
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as exc:
        read.problem("ca_url", f"{url!r} is not a valid URL: {exc}", _URL_HINT)
        return None
    if parts.username is not None or parts.password is not None:
        # Never echo it: the user info may be a password.
        read.problem(
            "ca_url",
            "carries user info (user:password@); step-ca authenticates by token only",
            "remove everything between '//' and '@'",
        )
        return None
    if port == 0:
        read.problem("ca_url", f"{url!r} has port 0", _URL_HINT)
        return None
    if parts.scheme != "https" or not parts.hostname:
        read.problem("ca_url", f"{url!r} is not an https:// URL with a host", _URL_HINT)
        return None
    if parts.path or parts.query or parts.fragment:
        read.problem(
            "ca_url",
            f"{url!r} has a path, query or fragment",
            "step-ca checks the token audience against https://<host>/1.0/sign: give "
            "only scheme, host and port",
        )
        return None
    return _ascii_host(url, parts.hostname, port, read)


def _ascii_host(url: str, host: str, port: int | None, read: ConfigReader) -> str | None:
    """``url`` with an internationalised host name in its ASCII (punycode) form, as the
    Host header, TLS name check and token audience need it."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return url
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        read.problem("ca_url", f"{host!r} is not a valid DNS host name", _URL_HINT)
        return None
    if ascii_host == host:
        return url
    return f"https://{ascii_host}" + (f":{port}" if port is not None else "")


def parse_go_duration(text: str) -> float:
    """Parse a Go duration (``"1h30m"``, ``"24h0m0s"``, ``"1.5h"``, ``"-5m"``, ``"0"``) into
    seconds, as Go's ``time.ParseDuration`` reads it (step-ca's claims, ``notAfter``).

    Raises:
        ValueError: ``text`` is not a Go duration, or is beyond Go's range (about 292 years).
    """
    body = text[1:] if text[:1] in ("+", "-") else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"{text!r} is not a Go duration (e.g. '5m', '24h', '1h30m')")
    if total > _MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is beyond the range of a Go duration (about 292 years)")
    return sign * total


def claim_duration(value: object) -> dt.timedelta | None:
    """A provisioner duration claim as ``/1.0/provisioners`` publishes it (``"24h0m0s"``).

    None when the claim is absent, not a Go duration, or not positive: the CA judges then.
    """
    if not isinstance(value, str):
        return None
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        return None
    return dt.timedelta(seconds=seconds) if seconds > 0 else None
