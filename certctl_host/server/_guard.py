"""Request guards: bearer-token authentication, per-client rate limit, body limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request

from certctl_core.domain import Secret
from certctl_host.server._problem import Problem

__all__ = ["BearerAuth", "RateLimiter", "read_body", "read_json"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="certctl"'}


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against the configured tokens.

    Every configured token is compared, each with :func:`hmac.compare_digest` over
    SHA-256 digests, so neither the position of a match nor the length of a token shows
    in the timing.
    """

    def __init__(self, tokens: Sequence[Secret]) -> None:
        self._digests = [hashlib.sha256(t.reveal().encode()).digest() for t in tokens]

    def __repr__(self) -> str:
        return f"BearerAuth({len(self._digests)} tokens)"

    def check(self, request: Request) -> None:
        """Raise a 401 problem unless the request carries a valid token."""
        header = request.headers.get("authorization")
        if header is None:
            raise Problem(
                401,
                "this endpoint needs an API token: send Authorization: Bearer <token>",
                headers=_CHALLENGE,
            )
        scheme, _, token = header.partition(" ")
        given = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        if scheme.lower() != "bearer" or not matched:
            raise Problem(
                401,
                "the API token is not valid",
                headers={
                    **_CHALLENGE,
                    "WWW-Authenticate": 'Bearer realm="certctl", error="invalid_token"',
                },
            )


class RateLimiter:
    """A token bucket per client address: ``rate`` requests/s, bursts of ``burst``.

    Holds at most ``max_clients`` buckets (least recently seen dropped first), so a
    flood of addresses cannot exhaust memory.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, request: Request) -> None:
        """Take one token for the client; raise a 429 problem with Retry-After if none."""
        client = request.client.host if request.client else "unknown"
        wait = self.take(client)
        if wait is not None:
            raise Problem(
                429,
                f"more than {self.rate:g} requests per second from {client}",
                headers={"Retry-After": str(wait)},
                retry_after=wait,
            )

    def take(self, client: str) -> int | None:
        """Take one token for ``client``: None if taken, else the seconds to wait (no
        token is taken then, so asking again is harmless)."""
        now = self._clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[client] = (tokens - 1.0, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading it all."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(413, f"the request body is larger than {limit} bytes", limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"the request body is larger than {limit} bytes", limit=limit)
    return bytes(body)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def require_media_type(request: Request, *accepted: str) -> None:
    media = _media_type(request)
    if media not in accepted:
        raise Problem(
            415,
            f"send the body as {' or '.join(accepted)}, not {media or 'no Content-Type'}",
            accepted=list(accepted),
        )


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body (415 for another media type, 400 for bad JSON)."""
    require_media_type(request, "application/json")
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Problem(400, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Problem(400, "the request body must be a JSON object")
    return data
