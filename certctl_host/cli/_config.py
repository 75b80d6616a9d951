"""Which issuer a command talks to: the connector type and its settings.

The type comes from ``--type`` (or ``CERTCTL_ISSUER_TYPE``); the settings from
``--config FILE`` (or ``CERTCTL_CONFIG``), a JSON object or TOML table of the
connector's keys. Keys the file leaves out are read by the connector itself from its
environment variables (the step-ca connector reads ``CERTCTL_STEPCA_*``), so a step-ca
issuer can be configured by the environment alone.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from certctl_host.cli._exit import UsageError
from certctl_host.cli._files import read_input

__all__ = ["CONFIG_ENV", "TYPE_ENV", "IssuerSpec", "issuer_spec", "load_config_file"]

TYPE_ENV = "CERTCTL_ISSUER_TYPE"
CONFIG_ENV = "CERTCTL_CONFIG"


@attrs.frozen
class IssuerSpec:
    """The issuer a command builds (settings hidden from ``repr``: they hold secrets)."""

    issuer_id: str
    type_name: str
    config: Mapping[str, Any] = attrs.field(repr=False)
    source: str


def load_config_file(path: Path) -> dict[str, Any]:
    """Parse a ``.json`` or ``.toml`` connector config; raise UsageError if unusable.

    Error messages give the position of a syntax error, never the file's text (it may
    hold a password).
    """
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise UsageError(
            f"cannot tell the format of config file {str(path)!r}",
            hint="name it *.json or *.toml",
        )
    data = read_input(path, "config file")
    try:
        text = data.decode("utf-8")
        parsed: Any = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"the config file {str(path)!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"the config file {str(path)!r} is not valid JSON: {exc.msg} "
            f"(line {exc.lineno}, column {exc.colno})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"the config file {str(path)!r} is not valid TOML: {exc}") from None
    if not isinstance(parsed, dict):
        raise UsageError(
            f"the config file {str(path)!r} must hold one object of connector settings",
            hint='e.g. {"ca_url": "https://ca.internal:9000", ...}',
        )
    return parsed


def issuer_spec(
    *,
    type_name: str | None,
    config_path: Path | None,
    issuer_id: str | None,
    env: Mapping[str, str] | None = None,
) -> IssuerSpec:
    """Resolve ``--type``/``--config``/``--issuer-id`` with their environment fallbacks."""
    env = os.environ if env is None else env
    chosen_type = type_name or env.get(TYPE_ENV) or ""
    if not chosen_type.strip():
        raise UsageError(
            "no connector type given",
            hint=f"pass --type (e.g. --type stepca) or set {TYPE_ENV}; "
            "'certctl plugins' lists the installed types",
        )
    path = config_path
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    config = load_config_file(path) if path is not None else {}
    source = f"config file {path}" if path is not None else "environment"
    return IssuerSpec(
        issuer_id=issuer_id or chosen_type.strip(),
        type_name=chosen_type.strip(),
        config=config,
        source=source,
    )
