"""Masking secret config fields for display, and keeping stored secrets on replace.

The placeholder is the string ``"********"`` (:data:`MASK`). Reading an issuer shows every
secret field that has a value as the placeholder; writing a config whose secret field is
exactly the placeholder keeps the stored value of that field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from certctl_core.domain import Secret
from certctl_core.errors import ConfigProblem

__all__ = ["MASK", "mask_config", "unmask_config"]

MASK = "********"


def mask_config(config: Mapping[str, Any], secret_fields: frozenset[str]) -> dict[str, Any]:
    """A copy of ``config`` with every secret field that has a value replaced by MASK."""
    return {
        name: (MASK if name in secret_fields and value is not None else value)
        for name, value in config.items()
    }


def unmask_config(
    config: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    secret_fields: frozenset[str],
    *,
    prefix: str = "config",
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """``config`` with placeholders replaced by the stored secrets.

    Returns the merged config and a problem for every placeholder with nothing stored
    behind it (or a placeholder in a field that is not secret).
    """
    merged: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for name, value in config.items():
        if isinstance(value, Secret):
            value = value.reveal()
        if value != MASK:
            merged[name] = value
        elif name not in secret_fields:
            problems.append(
                ConfigProblem(
                    f"{prefix}.{name}",
                    f"the placeholder {MASK} stands only for secret fields",
                    "give the real value",
                )
            )
        elif stored is None or stored.get(name) is None:
            problems.append(
                ConfigProblem(
                    f"{prefix}.{name}",
                    f"the placeholder {MASK} keeps a stored secret, but none is stored",
                    "give the secret itself",
                )
            )
        else:
            merged[name] = stored[name]
    return merged, problems
