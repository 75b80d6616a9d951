"""Configuration of the ACME connector: parsed once, every problem reported at once.

See docs/connectors/acme.md for the operator's view. Secrets (``account_key``,
``eab_hmac_key``) are sealed by hosts at rest and never shown.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from certctl_acme._jose import (
    AccountKey,
    eab_hmac_key_bytes,
    generate_account_key,
    load_account_key,
)
from certctl_core import ConfigReader, Secret

__all__ = ["CHALLENGES", "CONNECTOR_NAME", "KEYS", "AcmeConfig", "tls_context"]

CONNECTOR_NAME = "acme"
CHALLENGES = ("http-01", "dns-01", "tls-alpn-01")
_NUMBERS: dict[str, tuple[float, float, float]] = {
    "timeout_seconds": (10.0, 0.1, 600.0),
    "poll_interval_seconds": (0.5, 0.01, 60.0),
    "poll_timeout_seconds": (120.0, 1.0, 3600.0),
    "dns_propagation_seconds": (0.0, 0.0, 3600.0),
    "max_response_bytes": (1 << 20, 16 << 10, 64 << 20),
    "max_retries": (2, 0, 10),
}
KEYS = frozenset(
    {
        "directory_url",
        "tls_root_path",
        "account_key",
        "account_key_file",
        "contact",
        "terms_of_service_agreed",
        "eab_kid",
        "eab_hmac_key",
        "eab_hmac_key_file",
        "challenge",
        "http_address",
        "tls_address",
        "webroot",
        "dns_hook",
        "dns_hook_env",
        "profile",
        "preferred_chain",
        "ca_chain_path",
        "state_dir",
        "renewal_info",
        *_NUMBERS,
    }
)


@attrs.frozen
class AcmeConfig:
    """A validated ACME connector configuration (secrets masked in ``repr``)."""

    directory_url: str
    tls_root_path: Path | None
    account_key: AccountKey = attrs.field(repr=False)
    account_key_ephemeral: bool
    contact: tuple[str, ...]
    terms_of_service_agreed: bool
    eab_kid: str | None
    eab_hmac_key: Secret | None
    challenge: str
    http_host: str | None  # None: every address, IPv4 and IPv6
    http_port: int
    tls_host: str | None
    tls_port: int
    webroot: Path | None
    dns_hook: tuple[str, ...]
    dns_hook_env: tuple[str, ...]
    profile: str | None
    preferred_chain: str | None
    ca_chain_path: Path | None
    state_dir: Path | None
    renewal_info: bool
    timeout_seconds: float = 10.0
    poll_interval_seconds: float = 0.5
    poll_timeout_seconds: float = 120.0
    dns_propagation_seconds: float = 0.0
    max_response_bytes: int = 1 << 20
    max_retries: int = 2

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, issuer_id: str | None = None) -> AcmeConfig:
        """Validate ``raw``; raises ConfigError listing every problem. No network."""
        read = ConfigReader(raw, {}, known=KEYS, connector=CONNECTOR_NAME, issuer_id=issuer_id)
        url = read.text("directory_url", required=True)
        if url is not None:
            parts = urlsplit(url.strip())
            if parts.scheme != "https" or not parts.hostname:
                read.problem(
                    "directory_url",
                    "must be an https:// URL",
                    "use the CA's ACME directory, e.g. https://ca.internal:9000/acme/acme/directory",
                )
            elif parts.username is not None or parts.password is not None:
                read.problem("directory_url", "carries user info (user:password@)", "remove it")
            url = url.strip()
        tls_root = _file(
            read, "tls_root_path", "the PEM root that signed the ACME server's TLS certificate"
        )
        if tls_root is not None:
            try:
                tls_context(tls_root)
            except (ssl.SSLError, OSError, ValueError):
                read.problem(
                    "tls_root_path",
                    f"{tls_root} holds no PEM certificate TLS can use",
                    "point it at the PEM root that signed the ACME server's TLS certificate "
                    "(step-ca: certs/root_ca.crt)",
                )
                tls_root = None
        account_key: AccountKey | None = None
        ephemeral = False
        if raw.get("account_key") is None and raw.get("account_key_file") is None:
            account_key, ephemeral = generate_account_key(), True
        else:
            secret = read.secret("account_key", file_key="account_key_file")
            if secret is not None:
                try:
                    account_key = load_account_key(secret.reveal())
                except ValueError as exc:
                    field = (
                        "account_key" if raw.get("account_key") is not None else "account_key_file"
                    )
                    read.problem(
                        field,
                        str(exc),
                        "generate one with 'openssl genpkey -algorithm EC -pkeyopt "
                        "ec_paramgen_curve:P-256'",
                    )
        contact = _contact(read, raw.get("contact"))
        agreed = read.flag("terms_of_service_agreed")
        eab_kid = read.text("eab_kid")
        eab_key: Secret | None = None
        if raw.get("eab_hmac_key") is not None or raw.get("eab_hmac_key_file") is not None:
            eab_key = read.secret("eab_hmac_key", file_key="eab_hmac_key_file")
            if eab_key is not None:
                try:
                    decoded = eab_hmac_key_bytes(eab_key.reveal())
                except ValueError:
                    decoded = b""
                if not decoded:
                    read.problem(
                        "eab_hmac_key",
                        "is not a base64url-encoded key",
                        "paste the HMAC key exactly as the CA gave it (base64url)",
                    )
        if (eab_kid is None) != (eab_key is None):
            read.problem(
                "eab_kid" if eab_kid is None else "eab_hmac_key",
                "External Account Binding needs both eab_kid and eab_hmac_key",
                "set both (the CA gives them together) or neither",
            )
        if ephemeral and (eab_kid is not None or eab_key is not None):
            read.problem(
                "account_key",
                "is required with External Account Binding: without it every build "
                "(restart, config change) creates a new account, and a CA binds an EAB "
                "key to one account only",
                "make one with 'openssl genpkey -algorithm EC -pkeyopt "
                "ec_paramgen_curve:P-256 -out acme-account.pem' and set account_key_file",
            )
        challenge = read.text("challenge") or "http-01"
        if challenge not in CHALLENGES:
            read.problem(
                "challenge",
                f"must be one of {list(CHALLENGES)}, got {challenge!r}",
                "http-01 needs port 80 of every name reachable, tls-alpn-01 port 443; "
                "dns-01 needs dns_hook",
            )
        host: str | None = None  # every address: the CA validates from outside
        port = 80
        address = read.text("http_address")
        if address is not None:
            parsed = _address(address)
            if parsed is None:
                read.problem(
                    "http_address",
                    f"{address!r} is not host:port",
                    "e.g. *:80 (every address; the CA connects to port 80) or 127.0.0.1:5002",
                )
            else:
                host, port = parsed
        tls_host: str | None = None
        tls_port = 443
        tls_address = read.text("tls_address")
        if tls_address is not None:
            tls_parsed = _address(tls_address)
            if tls_parsed is None:
                read.problem(
                    "tls_address",
                    f"{tls_address!r} is not host:port",
                    "e.g. *:443 (the CA connects to port 443 for tls-alpn-01)",
                )
            else:
                tls_host, tls_port = tls_parsed
        webroot = read.path("webroot")
        if webroot is not None and not webroot.is_dir():
            read.problem(
                "webroot",
                f"{webroot} is not a directory",
                "point it at the web server's document root",
            )
        hook_text = read.text("dns_hook")
        hook: tuple[str, ...] = ()
        if hook_text is not None:
            try:
                hook = tuple(shlex.split(hook_text))
            except ValueError as exc:
                read.problem("dns_hook", f"cannot be split into a command: {exc}")
            if hook and not (os.path.isfile(hook[0]) or _on_path(hook[0])):
                read.problem(
                    "dns_hook",
                    f"{hook[0]!r} is not an executable file",
                    "give the hook's full path",
                )
        if challenge == "dns-01" and not hook and hook_text is None:
            read.problem(
                "dns_hook",
                "is required for challenge dns-01",
                "the command that publishes TXT records; see docs/connectors/acme.md",
            )
        hook_env = _env_names(read, raw.get("dns_hook_env"))
        chain = _file(read, "ca_chain_path", "the PEM issuing chain, intermediates then root")
        state_dir = read.path("state_dir")
        if state_dir is not None and not (state_dir.is_dir() and os.access(state_dir, os.W_OK)):
            read.problem(
                "state_dir",
                f"{state_dir} is not a writable directory",
                "create it for certctl: issued certificates are kept there for revocation",
            )
        numbers: dict[str, Any] = {
            key: read.number(
                key,
                low,
                high,
                default=default,
                integer=key in ("max_response_bytes", "max_retries"),
            )
            for key, (default, low, high) in _NUMBERS.items()
        }
        renewal_info = read.flag("renewal_info", default=False)
        profile = read.text("profile")
        preferred = read.text("preferred_chain")
        read.finish()
        assert url is not None and account_key is not None
        return cls(
            directory_url=url,
            tls_root_path=tls_root,
            account_key=account_key,
            account_key_ephemeral=ephemeral,
            contact=contact,
            terms_of_service_agreed=agreed,
            eab_kid=eab_kid,
            eab_hmac_key=eab_key,
            challenge=challenge,
            http_host=host,
            http_port=port,
            tls_host=tls_host,
            tls_port=tls_port,
            webroot=webroot,
            dns_hook=hook,
            dns_hook_env=hook_env,
            profile=profile,
            preferred_chain=preferred,
            ca_chain_path=chain,
            state_dir=state_dir,
            renewal_info=renewal_info,
            **numbers,
        )


def tls_context(root: Path) -> ssl.SSLContext:
    """A client TLS context trusting ``root`` (PEM); ssl.SSLError when it holds none."""
    return ssl.create_default_context(cafile=str(root))


def _file(read: ConfigReader, key: str, what: str) -> Path | None:
    path = read.path(key)
    if path is not None and not os.path.isfile(path):
        read.problem(key, f"{path} is not a readable file", f"point it at {what}")
        return None
    return path


def _on_path(name: str) -> bool:
    return shutil.which(name) is not None


def _contact(read: ConfigReader, value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        read.problem("contact", "must be an email address or a list of them")
        return ()
    out = []
    for item in items:
        item = item.strip().removeprefix("mailto:")
        if "@" not in item or any(c.isspace() for c in item):
            read.problem("contact", f"{item!r} is not an email address")
            continue
        out.append(f"mailto:{item}")
    return tuple(out)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_names(read: ConfigReader, value: Any) -> tuple[str, ...]:
    """``dns_hook_env``: the names of variables the hook inherits from certctl's environment."""
    if value is None or value == "":
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        read.problem("dns_hook_env", "must be a list of environment variable names")
        return ()
    out: list[str] = []
    for name in items:
        if not _ENV_NAME.fullmatch(name):
            read.problem("dns_hook_env", f"{name!r} is not an environment variable name")
        elif name.upper().startswith("CERTCTL_"):
            read.problem(
                "dns_hook_env",
                f"{name} is certctl's own setting (they include the server key, database "
                "URL and API tokens)",
                "give the hook what it needs under another name, e.g. DNS_API_TOKEN_FILE",
            )
        elif name not in out:
            out.append(name)
    return tuple(out)


def _address(text: str) -> tuple[str | None, int] | None:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    host = host.strip("[]")
    return (None if host in ("", "*") else host), int(port)
