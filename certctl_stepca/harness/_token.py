"""One-time tokens for harness self-tests and raw benchmarks (the connector mints its own)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jwcrypto import jwt

from ._provisioner import ProvisionerKey

__all__ = ["mint_token"]


def mint_token(
    key: ProvisionerKey,
    *,
    audience: str,
    subject: str,
    sans: Sequence[str] = (),
    lifetime_s: int = 300,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a step-ca one-time token (JWS compact) signed with ``key``.

    Header ``{"alg", "kid", "typ": "JWT"}``; claims ``iss`` (provisioner name), ``sub``,
    ``sans`` (omitted when empty: step-ca then uses ``[sub]``), ``aud``, ``iat``, ``nbf``,
    ``exp`` and a random ``jti``. ``extra_claims`` override or add claims (negative tests).
    ``audience`` is e.g. ``https://localhost/1.0/sign`` or ``.../1.0/revoke``.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": key.name,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": secrets.token_hex(32),
    }
    if sans:
        claims["sans"] = list(sans)
    if extra_claims:
        claims.update(extra_claims)
    header = {"alg": key.jws_alg, "kid": key.kid, "typ": "JWT"}
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key.signing_jwk())
    serialized: str = token.serialize()
    return serialized
