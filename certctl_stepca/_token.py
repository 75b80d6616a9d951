"""One-time tokens (OTT): a fresh signed JWT for every request and every retry.

step-ca stores a token's ``jti`` before it even checks the signature, so a token is spent
by any answer, including a 403: never reuse one. It also rejects tokens whose ``iat`` is
before the CA process started, so tokens are never minted ahead of time.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence

from jwcrypto import jws

from certctl_stepca._keyfile import ProvisionerKey

__all__ = ["mint_token"]


def mint_token(
    key: ProvisionerKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    sans: Sequence[str] = (),
    lifetime_seconds: int = 300,
    now: float | None = None,
) -> str:
    """A compact JWS step-ca accepts as the ``ott`` of ``/1.0/sign`` or ``/1.0/revoke``."""
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime_seconds,
        "jti": secrets.token_hex(32),
    }
    if sans:
        claims["sans"] = list(sans)
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}
    token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
    token.add_signature(key.key, alg=key.algorithm, protected=json.dumps(header))
    return str(token.serialize(compact=True))
