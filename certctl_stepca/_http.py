"""HTTP to step-ca: one pooled client, TLS pinned to the configured root, bounded answers.

Exchanges run on asyncio's own TLS streams with h11 (the HTTP/1.1 state machine under
httpx) and a small keep-alive pool, not on ``httpx.AsyncClient``: measured against a real
step-ca, one request costs ~0.8 ms of client CPU through ``httpx.AsyncClient``, ~0.47 ms
through a blocking ``httpx.Client``, ~0.24 ms through httpcore's blocking pool and ~0.14
ms here, all on the event loop, with no thread hand-offs (ADR 0016). An injected
``transport`` (tests simulating faults a real CA cannot produce) is an async httpx
transport, used through ``httpx.AsyncClient`` with the same error translation.

This is the one place where ``httpx``, ``h11``, ``ssl`` and socket exceptions become
certctl errors:
timeouts -> CATimeoutError, connection failures -> CAUnreachableError, a TLS peer that
does not chain to the pinned root -> InvalidResponseError (not retryable). Status codes
are interpreted by the connector, which knows what it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import h11
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl_core import (
    CATimeoutError,
    CAUnreachableError,
    ConfigError,
    ConfigProblem,
    InvalidResponseError,
    IssuerClosedError,
)
from certctl_core.errors import Where
from certctl_stepca.config import StepCAConfig

__all__ = ["CAClient", "CAResponse", "load_root", "parse_retry_after"]

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 300.0
_MAX_ROOT_FILE = 1 << 20  # a root bundle is a few KiB

T = TypeVar("T")


@attrs.frozen
class CAResponse:
    """A complete, size-bounded answer from step-ca."""

    status: int
    headers: httpx.Headers = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; InvalidResponseError if it is not one."""
        try:
            doc = json.loads(self.body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            doc = None
        if not isinstance(doc, dict):
            raise InvalidResponseError(
                f"the CA answered {self.status} with a body that is not a JSON object"
            )
        return doc

    def ca_message(self) -> str | None:
        """step-ca's ``message`` from an error body, if there is one."""
        try:
            message = self.json().get("message")
        except InvalidResponseError:
            return None
        return message[:500] if isinstance(message, str) else None


def _same(response: CAResponse) -> CAResponse:
    return response


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_root(config: StepCAConfig) -> x509.Certificate | None:
    """The pinned root from ``root_cert_path`` (None with only a fingerprint).

    Raises ConfigError when the file is unreadable, not a certificate, or does not match
    ``root_fingerprint``.
    """
    path = config.root_cert_path
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_ROOT_FILE + 1)
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem("root_cert_path", f"cannot read {path}: {exc.strerror}")]
        ) from None
    if len(data) > _MAX_ROOT_FILE:
        raise ConfigError(
            [ConfigProblem("root_cert_path", f"{path} is larger than a root certificate")]
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except (ValueError, x509.InvalidVersion):
            raise ConfigError(
                [
                    ConfigProblem(
                        "root_cert_path",
                        f"{path} is not a PEM or DER certificate",
                        "use step-ca's certs/root_ca.crt",
                    )
                ]
            ) from None
    root = certs[0]
    if config.root_fingerprint and fingerprint(root) != config.root_fingerprint:
        raise ConfigError(
            [
                ConfigProblem(
                    "root_fingerprint",
                    f"does not match the certificate in {path} (its SHA-256 is "
                    f"{fingerprint(root)})",
                    "pin the fingerprint of the same root, or drop one of the two",
                )
            ]
        )
    return root


def _ssl_context(root: x509.Certificate) -> ssl.SSLContext:
    # cadata only: create_default_context loads the system store only without any CA.
    pem = root.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return ssl.create_default_context(cadata=pem)


def _is_tls_verification(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _whole(content: bytes) -> AsyncIterator[bytes]:
    yield content


#: An idle kept-alive connection older than this is closed rather than reused (as httpx
#: does): a NAT or firewall may have forgotten it without telling either end.
KEEPALIVE_EXPIRY = 5.0


class _PoolBusyError(TimeoutError):
    """Every connection of the pool stayed busy for ``timeout_seconds``."""


class _Connection:
    """One kept-alive HTTPS connection and its HTTP/1.1 state machine."""

    __slots__ = ("idle_since", "protocol", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def clean(self) -> bool:
        """The exchange ended exactly at the end of the answer: nothing unread is left
        (bytes after it would otherwise be taken as the next request's answer)."""
        protocol = self.protocol
        return (
            protocol.our_state is h11.DONE
            and protocol.their_state is h11.DONE
            and protocol.trailing_data == (b"", False)
            # StreamReader keeps what h11 was not given yet; there is no public accessor.
            and not getattr(self.reader, "_buffer", b"")
        )

    def reusable(self, now: float) -> bool:
        return not (
            self.reader.at_eof()
            or self.writer.is_closing()
            or now - self.idle_since > KEEPALIVE_EXPIRY
        )

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify): for broken or used-up ones."""
        self.writer.transport.abort()


class _Answer:
    __slots__ = ("body", "headers", "ssl_object", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.ssl_object: Any = None


class _StreamPool:
    """Kept-alive HTTPS/1.1 connections to one step-ca over asyncio streams.

    h11 speaks the protocol; asyncio's streams carry it. At most ``max_connections``
    exchanges run at once (the others wait, up to ``timeout_seconds``); one exchange,
    connecting included, is bounded by ``timeout_seconds`` as a whole, so a CA that drips
    its answer cannot hold a connection longer. A connection goes back to the pool only
    after a complete exchange that left nothing unread, and is reused for at most
    ``KEEPALIVE_EXPIRY`` seconds of idleness; any other is aborted.
    """

    def __init__(self, config: StepCAConfig, context: ssl.SSLContext) -> None:
        parts = urlsplit(config.ca_url)
        assert parts.hostname is not None  # the config validated it
        self._host, self._port = parts.hostname, parts.port or 443
        self._authority = parts.netloc
        self._context = context
        self._timeout = config.timeout_seconds
        self._slots = asyncio.Semaphore(config.max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connection(self) -> _Connection:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable(now):
                return conn
            conn.abort()
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._context, server_hostname=self._host
        )
        return _Connection(reader, writer)

    async def send(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: Callable[[], bytes | None],
        limit: int,
        too_large: Callable[[], Exception],
    ) -> _Answer:
        """One exchange. ``content()`` makes the body once a connection is ready, so a
        one-time token in it is minted after any wait for a free connection."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise _PoolBusyError from None
        try:
            conn: _Connection | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await self._connection()
                    answer = await self._exchange(
                        conn, method, path, headers, content(), limit, too_large
                    )
            except BaseException:
                if conn is not None:
                    conn.abort()
                raise
            if conn.clean() and not self._closed:
                conn.protocol.start_next_cycle()
                conn.idle_since = asyncio.get_running_loop().time()
                self._idle.append(conn)
            else:
                conn.abort()
            return answer
        finally:
            self._slots.release()

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: bytes | None,
        limit: int,
        too_large: Callable[[], Exception],
    ) -> _Answer:
        protocol = conn.protocol
        sent = [(b"Host", self._authority.encode()), *headers]
        if content is not None:
            sent.append((b"Content-Length", str(len(content)).encode()))
        data = protocol.send(h11.Request(method=method, target=path, headers=sent)) or b""
        if content:
            data += protocol.send(h11.Data(data=content)) or b""
        data += protocol.send(h11.EndOfMessage()) or b""
        conn.writer.write(data)
        await conn.writer.drain()
        status, response_headers, chunks, size = 0, [], [], 0
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(await conn.reader.read(65536))
            elif isinstance(event, h11.Response):
                status, response_headers = event.status_code, list(event.headers)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise too_large()
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the CA closed the connection mid-answer")
        answer = _Answer(status, response_headers, b"".join(chunks))
        answer.ssl_object = conn.writer.get_extra_info("ssl_object")
        return answer

    async def aclose(self) -> None:
        self._closed = True  # exchanges still running abort their connection at the end
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                async with asyncio.timeout(min(self._timeout, 5.0)):
                    await conn.writer.wait_closed()
            except (OSError, TimeoutError):  # ssl.SSLError is an OSError
                conn.abort()


class CAClient:
    """Sends requests to one step-ca over a pooled, root-pinned HTTPS client."""

    def __init__(
        self,
        config: StepCAConfig,
        root: x509.Certificate | None,
        *,
        where: Where,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._root = root
        self._where = where
        self._transport = transport
        self._client: httpx.AsyncClient | None = None  # only with an injected transport
        self._pool: _StreamPool | None = None
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._tls_intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def root(self) -> x509.Certificate | None:
        return self._root

    def _options(self, verify: ssl.SSLContext | bool) -> dict[str, Any]:
        limit = self._config.max_connections
        return {
            "base_url": self._config.ca_url,
            "verify": verify,
            "timeout": httpx.Timeout(self._config.timeout_seconds),
            "limits": httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            # step-ca never compresses; identity keeps max_response_bytes a bound on memory.
            "headers": {"User-Agent": "certctl-stepca/0.1", "Accept-Encoding": "identity"},
            "trust_env": False,
        }

    def _make_client(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, **self._options(verify))

    async def _ready(self) -> None:
        """Create the pinned client on first use (fetching the root first if only pinned)."""
        if self._client is not None or self._pool is not None:
            return
        async with self._lock:
            if self._client is not None or self._pool is not None:
                return
            if self._root is None:
                self._root = await self._bootstrap_root()
            context = _ssl_context(self._root)
            if self._transport is not None:
                self._client = self._make_client(context)
            else:
                self._pool = _StreamPool(self._config, context)

    async def _bootstrap_root(self) -> x509.Certificate:
        """Fetch the root named by ``root_fingerprint`` and accept it only if it hashes to it.

        The one request made without TLS verification; its answer is authenticated by the
        pinned SHA-256 instead, and every later request verifies TLS against that root.
        """
        pin = self._config.root_fingerprint
        assert pin is not None
        async with self._make_client(verify=False) as client:
            response = await self._send(client, "GET", f"/root/{pin}", None, pinned=False)
        pem = response.json().get("ca") if response.status == 200 else None
        try:
            root = x509.load_pem_x509_certificate(pem.encode()) if isinstance(pem, str) else None
        except (ValueError, x509.InvalidVersion):
            root = None
        if root is None or fingerprint(root) != pin:
            raise InvalidResponseError(
                f"the CA did not return a root with the pinned fingerprint (HTTP "
                f"{response.status})",
                hint="check root_fingerprint against 'step certificate fingerprint "
                "root_ca.crt' on the CA host, or configure root_cert_path",
                **self._where,
            )
        return root

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: Callable[[], str] | None = None,
    ) -> CAResponse:
        """One attempt; translates transport failures, never retries (see :meth:`exchange`)."""
        return await self.exchange(method, path, body, token=token, then=_same)

    async def exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        token: Callable[[], str] | None,
        then: Callable[[CAResponse], T],
    ) -> T:
        """One attempt whose answer ``then`` turns into the result; never retries.

        ``token()``, when given, is called just before sending and its result is sent as
        the body's ``ott``: one-time tokens are minted as late as possible. ``then(response)``
        runs right after the answer, inside the shielded exchange (a certificate is parsed
        and verified even if the caller was cancelled meanwhile, so the connection's state
        stays simple); what it raises is raised to the caller.

        The exchange runs in its own task, shielded from the caller's cancellation: a
        connection cancelled mid-exchange would be half-used, so a cancelled call returns
        at once while its exchange finishes (bounded by ``timeout_seconds``) and hands the
        connection back to the pool. ``aclose`` waits for such exchanges.
        """
        if self._closed:
            raise IssuerClosedError(
                "this connector was closed",
                hint="the registry replaced or removed it; call through the registry",
                **self._where,
            )
        await self._ready()
        future: asyncio.Future[T]
        if self._pool is not None:
            pool = self._pool

            async def native() -> T:
                return then(await self._send_native(pool, method, path, body, token))

            future = asyncio.ensure_future(native())
        else:
            client = self._client
            assert client is not None

            async def on_loop() -> T:
                return then(await self._send(client, method, path, body, token))

            future = asyncio.ensure_future(on_loop())
        self._inflight.add(future)
        future.add_done_callback(self._forget)
        return await asyncio.shield(future)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled will not read it

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The CA's intermediates as its TLS handshake presented and we verified them."""
        return self._tls_intermediates

    def _capture_chain(self, response: httpx.Response) -> None:
        """Keep the verified TLS chain's intermediates (leaf and root excluded), once."""
        if self._tls_intermediates:
            return
        stream = response.extensions.get("network_stream")
        self._capture_chain_of(stream.get_extra_info("ssl_object") if stream is not None else None)

    def _capture_chain_of(self, ssl_object: Any) -> None:
        if self._tls_intermediates or ssl_object is None:
            return
        # Public in Python 3.13; the same method lives on the private object before that.
        verified = getattr(ssl_object, "get_verified_chain", None)
        if verified is None:
            verified = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
        try:
            chain = verified() if verified is not None else []
            # _ssl.Certificate.public_bytes() gives PEM text by default.
            certs = [x509.load_pem_x509_certificate(c.public_bytes().encode()) for c in chain]
        except (ValueError, x509.InvalidVersion, TypeError, AttributeError, ssl.SSLError):
            return
        self._tls_intermediates = tuple(certs[1:-1])

    def _too_large(self, method: str, path: str) -> InvalidResponseError:
        limit = self._config.max_response_bytes
        return InvalidResponseError(
            f"the CA's answer to {method} {path} exceeds {limit} bytes",
            hint="raise max_response_bytes if this CA really sends that much",
            **self._where,
        )

    async def _send_native(
        self,
        pool: _StreamPool,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        token: Callable[[], str] | None = None,
    ) -> CAResponse:
        """One exchange on the pool. No content coding is accepted (identity only),
        so the body read is the body sent and the size bound holds."""
        headers = [
            (b"User-Agent", b"certctl-stepca/0.1"),
            (b"Accept", b"application/json"),
            (b"Accept-Encoding", b"identity"),
        ]
        if body is not None or token is not None:
            headers.append((b"Content-Type", b"application/json"))

        def content() -> bytes | None:
            sent = body if token is None else {**(body or {}), "ott": token()}
            return None if sent is None else json.dumps(sent).encode()

        with self._translated(method, path):
            answer = await pool.send(
                method,
                path,
                headers,
                content,
                self._config.max_response_bytes,
                lambda: self._too_large(method, path),
            )
        self._capture_chain_of(answer.ssl_object)
        log.debug("%s %s -> %d (%d bytes)", method, path, answer.status, len(answer.body))
        response_headers = httpx.Headers(answer.headers)
        self._refuse_compressed(response_headers, method, path)
        return CAResponse(answer.status, response_headers, answer.body)

    def _refuse_compressed(self, headers: httpx.Headers, method: str, path: str) -> None:
        """A compressed answer could inflate a thousandfold inside one read (a gzip bomb
        against httpx's decoder); step-ca never compresses, so it is refused."""
        encoding = headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise InvalidResponseError(
                f"the CA's answer to {method} {path} is compressed ({encoding}) although "
                "certctl asked for identity",
                hint="step-ca never compresses: is something between certctl and the CA "
                "rewriting answers?",
                **self._where,
            )

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        token: Callable[[], str] | None = None,
        *,
        pinned: bool = True,
    ) -> CAResponse:
        limit = self._config.max_response_bytes
        if token is not None:
            body = {**(body or {}), "ott": token()}
        with self._translated(method, path):
            async with client.stream(method, path, json=body) as response:
                if pinned:
                    self._capture_chain(response)
                self._refuse_compressed(response.headers, method, path)
                chunks: list[bytes] = []
                size = 0
                # Raw bytes, so no decoder can inflate them; an answer built in memory (a
                # test transport) is already whole and is only size-checked.
                raw = _whole(response.content) if response.is_stream_consumed else None
                async for chunk in raw or response.aiter_raw():
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large(method, path)
                    chunks.append(chunk)
                log.debug("%s %s -> %d (%d bytes)", method, path, response.status_code, size)
                return CAResponse(response.status_code, response.headers, b"".join(chunks))

    @contextlib.contextmanager
    def _translated(self, method: str, path: str) -> Iterator[None]:
        """Turn httpx's exceptions into certctl errors (the only place that does)."""
        try:
            yield
        except _PoolBusyError:
            limit = self._config.max_connections
            raise CATimeoutError(
                f"{method} {path}: all {limit} connections to the CA stayed busy for "
                f"{self._config.timeout_seconds:g}s",
                hint="the CA answers slower than requests arrive; raise max_connections or "
                "timeout_seconds, or send fewer requests at once",
                **self._where,
            ) from None
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise CATimeoutError(
                f"{method} {path}: the CA did not answer within "
                f"{self._config.timeout_seconds:g}s ({type(exc).__name__})",
                hint="check the CA's load and network; raise timeout_seconds if it is slow",
                **self._where,
            ) from None
        except (httpx.TransportError, OSError, h11.ProtocolError) as exc:
            if _is_tls_verification(exc):
                raise InvalidResponseError(
                    f"the CA's TLS certificate at {self._config.ca_url} does not chain to "
                    "the pinned root",
                    hint="the CA is behind a different root than root_cert_path / "
                    "root_fingerprint, or ca_url names a host its certificate lacks",
                    **self._where,
                ) from None
            raise CAUnreachableError(
                f"{method} {path}: cannot reach the CA at {self._config.ca_url} "
                f"({type(exc).__name__}: {exc})",
                hint="is step-ca running and is ca_url right?",
                **self._where,
            ) from None
        except httpx.HTTPError as exc:
            raise CAUnreachableError(
                f"{method} {path}: HTTP failure ({type(exc).__name__})", **self._where
            ) from None

    async def aclose(self) -> None:
        """Wait for running exchanges (each bounded by the slot wait plus one exchange),
        cancel any still running after that, then close every connection."""
        self._closed = True
        deadline = 2 * self._config.timeout_seconds + 1.0
        while self._inflight:
            running = set(self._inflight)
            _, late = await asyncio.wait(running, timeout=deadline)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.aclose()
