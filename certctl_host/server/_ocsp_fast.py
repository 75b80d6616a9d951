"""The OCSP endpoint's lean path: answered in the ASGI layer, without the framework.

``/.well-known/pki/ocsp/...`` is the busiest endpoint of a certctl server (every TLS
client that checks revocation). :class:`OCSPFastPath` sits in front of the Starlette
application and answers the well-formed requests itself: POST of a DER request, GET by
hex serial, GET of the base64 request (RFC 6960 Appendix A). It takes the rate-limit token
as the route does and answers through :func:`answer`, which the Starlette routes use too
(one copy of the logic). Everything else, including every refusal that is a problem
document (413, 415, 429) and every request while the server starts, goes on to the
application unchanged, with the body it had.

:func:`answer` serves pre-signed answers to requests without a nonce from the
:class:`~certctl_host.server._ocsp_cache.OCSPCache` (ADR 0026).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certctl_core.revocation import ocsp_error_response
from certctl_host.server._guard import RateLimiter
from certctl_host.server._ocsp_cache import has_nonce

if TYPE_CHECKING:
    from certctl_host.server._service import IssuerService

__all__ = [
    "OCSP_PREFIX",
    "OCSP_REQUEST",
    "OCSP_RESPONSE",
    "OCSPFastPath",
    "answer",
    "b64_request",
    "etags",
    "serial_from_hex",
]

log = logging.getLogger(__name__)

OCSP_PREFIX = "/.well-known/pki/ocsp/"
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
_HEX_SERIAL = re.compile(r"\A[0-9A-Fa-f]+\Z")
#: RFC 5280 §4.1.2.2: serials are positive and at most 20 octets.
_SERIAL_BOUND = 1 << 160
_URLSAFE = str.maketrans("-_", "+/")
_NO_STORE = {"Cache-Control": "no-store"}
#: Requests larger than this are answered but not cached (a real one is ~100 bytes).
_MAX_CACHED_REQUEST = 512

#: (HTTP status, body, headers)
Reply = tuple[int, bytes, dict[str, str]]


def b64_request(text: str) -> bytes | None:
    """Base64 of the GET form: standard or URL-safe alphabet, padded or not, with "+"
    possibly turned into a space by a careless client. None if it does not decode."""
    cleaned = text.replace(" ", "+").translate(_URLSAFE).rstrip("=")
    if not cleaned or len(cleaned) % 4 == 1:
        return None
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def serial_from_hex(text: str) -> int | None:
    """The serial of an all-hex GET path; 0 for hex that is no valid serial; None when
    the path is not hex (then it is the base64 form).

    A DER OCSP request is a SEQUENCE (0x30), so its base64 always starts with "M"; hex
    never contains "M": an all-hex path is a serial, however many digits."""
    if not _HEX_SERIAL.match(text):
        return None
    serial = int(text, 16)
    return serial if 0 < serial < _SERIAL_BOUND else 0


def etags(header: str | None) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compared as strong)."""
    if not header:
        return set()
    if header.strip() == "*":
        return {"*"}
    return {part.strip().removeprefix("W/") for part in header.split(",")}


async def answer(
    service: IssuerService,
    issuer_id: str,
    key: bytes,
    compute: Callable[[], Awaitable[bytes]],
    *,
    nonce: bool,
    http_cacheable: bool,
    if_none_match: str | None = None,
) -> Reply:
    """The reply to one OCSP request: from the cache when it has no nonce and a fresh
    pre-signed answer is there, else ``compute()`` (kept for the next time when it can be).

    ``key`` names the request (its DER, or its serial for the hex GET form);
    ``http_cacheable`` (GET) adds RFC 5019 caching headers and honours If-None-Match;
    POST answers are ``no-store`` for HTTP caches, as before.
    """
    cache = service.ocsp_cache
    facts = None
    # Not cached: answers with a nonce; requests padded past any real one's size (a key
    # per request must not let a client fill memory); and answers on a store other
    # servers write too (PostgreSQL replicas): a revocation on another replica reaches
    # this one by a notice, which could lag a revocation call that already returned.
    if not nonce and len(key) <= _MAX_CACHED_REQUEST and not service.shared_store:
        key = hashlib.sha256(key).digest()
        facts = cache.get(issuer_id, key)
        if facts is not None:
            seen = cache.epoch(issuer_id)
            current = await service.ocsp_answer_current(issuer_id, facts)
            if not current or cache.epoch(issuer_id) != seen:
                facts = None  # stale, or a revocation ran while it was checked
        if facts is None:
            epoch = cache.epoch(issuer_id)
            token = service.store_token()
            der = await compute()
            facts = cache.put(issuer_id, key, der, epoch, token)
            if facts is None or cache.epoch(issuer_id) != epoch:
                # Not cacheable, or a revocation ran meanwhile: this answer goes out once,
                # and no HTTP cache may keep it either.
                return 200, der, _NO_STORE
    else:
        return 200, await compute(), _NO_STORE
    if not http_cacheable:
        return 200, facts.der, _NO_STORE
    headers = facts.headers(time.time())
    wanted = etags(if_none_match)
    if facts.etag in wanted or "*" in wanted:  # RFC 9110 §13.1.2
        return 304, b"", headers
    return 200, facts.der, headers


async def answer_post(service: IssuerService, issuer_id: str, body: bytes) -> Reply:
    return await answer(
        service,
        issuer_id,
        b"D" + body,
        lambda: service.ocsp(issuer_id, body),
        nonce=has_nonce(body),
        http_cacheable=False,
    )


async def answer_get(
    service: IssuerService, issuer_id: str, text: str, if_none_match: str | None
) -> Reply:
    """``text`` is the path after the issuer id, URL-decoded; its length already checked."""
    serial = serial_from_hex(text)
    if serial == 0:
        return 200, ocsp_error_response("malformed_request"), _NO_STORE
    if serial is not None:
        found = serial
        return await answer(
            service,
            issuer_id,
            b"S" + format(found, "x").encode(),
            lambda: service.ocsp_for_serial(issuer_id, found),
            nonce=False,
            http_cacheable=True,
            if_none_match=if_none_match,
        )
    request_der = b64_request(text)
    if request_der is None:
        return 200, ocsp_error_response("malformed_request"), _NO_STORE
    der = request_der
    return await answer(
        service,
        issuer_id,
        b"D" + der,
        lambda: service.ocsp(issuer_id, der),
        nonce=has_nonce(der),
        http_cacheable=True,
        if_none_match=if_none_match,
    )


class OCSPFastPath:
    """ASGI middleware: well-formed OCSP requests answered without the framework."""

    def __init__(
        self,
        app: ASGIApp,
        service: Callable[[], IssuerService | None],
        limiter: RateLimiter,
        max_request_bytes: int,
    ) -> None:
        self.app = app
        self._service = service
        self._limiter = limiter
        self._max = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OCSP_PREFIX):
            await self.app(scope, receive, send)
            return
        service = self._service()
        method = scope["method"]
        rest = scope["path"][len(OCSP_PREFIX) :]
        issuer_id, slash, tail = rest.partition("/")
        if service is None or not issuer_id:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if method == "POST" and not slash:
            media = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
            length = headers.get(b"content-length", b"")
            if media != OCSP_REQUEST.encode() or (length.isdigit() and int(length) > self._max):
                await self.app(scope, receive, send)
                return
            body, messages = await _read(receive, self._max)
            if messages[-1]["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            if body is None or self._refused(scope):
                await self.app(scope, _replay(messages, receive), send)
                return
            reply = await self._safely(answer_post(service, issuer_id, body))
        elif method == "GET" and slash:
            text = unquote(tail)
            if len(text) > self._max * 4 // 3 + 4 or self._refused(scope):
                await self.app(scope, receive, send)
                return
            etag = headers.get(b"if-none-match")
            reply = await self._safely(
                answer_get(service, issuer_id, text, etag.decode("latin-1") if etag else None)
            )
        else:
            await self.app(scope, receive, send)
            return
        status, body, extra = reply
        raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in extra.items()]
        if status != 304:
            raw.append((b"content-type", OCSP_RESPONSE.encode()))
            raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _refused(self, scope: Scope) -> bool:
        """Whether the rate limit refuses the client (the application then says 429)."""
        client = scope.get("client")
        return self._limiter.take(client[0] if client else "unknown") is not None

    @staticmethod
    async def _safely(pending: Awaitable[Reply]) -> Reply:
        try:
            return await pending
        except Exception as exc:  # noqa: BLE001 - an OCSP client gets an OCSP answer
            log.error("OCSP failed: %s", type(exc).__name__)  # noqa: TRY400 - no traceback
            return 200, ocsp_error_response("internal_error"), _NO_STORE


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


async def _read(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The body (None when larger than ``limit`` or the client left) and the messages
    read, to hand on unchanged."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        size += len(message.get("body", b""))
        if size > limit:
            return None, messages
        if not message.get("more_body", False):
            break
    return b"".join(m.get("body", b"") for m in messages), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
