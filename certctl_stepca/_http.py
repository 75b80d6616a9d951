"""HTTP to step-ca: one code path, TLS pinned to the configured root, bounded answers.

Every request, the one that fetches a root pinned only by its fingerprint included, is
one HTTP/1.1 exchange spoken with ``h11`` over an asyncio TLS connection from a small
keep-alive pool of our own (ADR 0016, ADR 0020). Nothing goes through ``httpx``: measured
against a real step-ca, a whole issuance costs ~1.3 ms of client CPU on this path and
~2.6 ms on ``httpx.AsyncHTTPTransport``. There is no injection seam; faults are tested by
putting :class:`certctl_stepca.testing.FaultProxy` between this code and a real step-ca.

The size bound (counted on the wire), the refusal of compressed answers and the capture
of the CA's verified TLS chain exist once, here. This module is the one place where
``h11``, ``ssl``, socket and value errors become certctl errors (:meth:`CAClient._translated`):
timeouts -> CATimeoutError, connection failures -> CAUnreachableError, a TLS peer that
does not chain to the pinned root, an oversized or compressed answer ->
InvalidResponseError (not retryable). Status codes are interpreted by the connector,
which knows what it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import hashlib
import itertools
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import attrs
import h11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from certctl_core import (
    CATimeoutError,
    CAUnreachableError,
    ConfigError,
    ConfigProblem,
    InvalidResponseError,
    IssuerClosedError,
)
from certctl_core.files import FileTooLargeError, read_regular_file
from certctl_stepca.config import StepCAConfig

__all__ = [
    "CAClient",
    "CAResponse",
    "ResponseHeaders",
    "load_root",
    "parse_http_date",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 300.0
_MAX_ROOT_FILE = 1 << 20  # a root bundle is a few KiB
_READ_SIZE = 1 << 16
_USER_AGENT = b"certctl-stepca/0.1"

#: An idle kept-alive connection older than this is closed rather than reused (as httpx
#: does): a NAT or firewall may have forgotten it without telling either end.
KEEPALIVE_EXPIRY = 5.0

T = TypeVar("T")


class ResponseHeaders(Mapping[str, str]):
    """An answer's headers, looked up case-insensitively; repeated ones joined by ", "."""

    __slots__ = ("_fields",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        fields: dict[str, str] = {}
        for name, value in raw:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"ResponseHeaders({sorted(self._fields)!r})"  # names only


@attrs.frozen
class CAResponse:
    """A complete, size-bounded answer from step-ca."""

    status: int
    headers: ResponseHeaders = attrs.field(repr=False)
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


def as_response(response: CAResponse) -> CAResponse:
    """The answer itself: the ``then`` of an exchange that wants the raw response."""
    return response


def parse_http_date(value: str | None) -> dt.datetime | None:
    """An HTTP date (``Date``, ``Retry-After``) as an aware UTC datetime; None if absent or
    unreadable. HTTP dates are GMT by definition, so one without a zone, or with
    ``-0000`` (RFC 5322: UTC, origin unknown), is read as UTC; a repeated header (joined
    by ", ") yields its first date."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
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
        data = read_regular_file(path, _MAX_ROOT_FILE)
    except FileTooLargeError:
        raise ConfigError(
            [ConfigProblem("root_cert_path", f"{path} is larger than a root certificate")]
        ) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "the path contains a NUL byte"
        raise ConfigError(
            [ConfigProblem("root_cert_path", f"cannot read {path}: {reason}")]
        ) from None
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


def _unverified_context() -> ssl.SSLContext:
    """For the one request whose answer a pinned SHA-256 authenticates instead of TLS."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _is_tls_verification(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# -- the pool's own failures, translated by CAClient._translated -------------------------


class _PoolBusyError(Exception):
    """Every connection of the pool stayed busy for ``timeout_seconds``."""


class _TooLargeError(Exception):
    """The answer's body exceeds ``max_response_bytes`` (counted on the wire)."""


class _CompressedError(Exception):
    """The answer declares a content coding although certctl asked for identity."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


class _NoTLS12Error(Exception):
    """The CA ended a TLS 1.2 handshake without finishing it (it speaks only TLS 1.3)."""


class _Wire(asyncio.Protocol):
    """The received bytes of one connection, buffered here so that the pool can tell,
    through public API only, whether anything arrived that no request asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: Exception | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 4 * _READ_SIZE and self.transport is not None:
            self.transport.pause_reading()  # the reader is behind; let TCP push back
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.error = True, exc
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """What arrived since the last read (waiting for something); b"" at the end."""
        while not self.buffer and not self.closed:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self.buffer and self.error is not None:
            raise self.error
        data = bytes(self.buffer)
        self.buffer.clear()
        transport = self.transport
        if transport is not None and not transport.is_reading() and not self.closed:
            transport.resume_reading()
        return data


class _Connection:
    """One kept-alive HTTPS connection and its HTTP/1.1 state machine."""

    __slots__ = ("http", "idle_since", "transport", "wire")

    def __init__(self, transport: asyncio.Transport, wire: _Wire) -> None:
        self.transport, self.wire = transport, wire
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def finished_cleanly(self) -> bool:
        """The exchange ended exactly at the end of the answer and the CA is still there:
        h11 holds nothing past the answer and nothing else arrived (bytes after it would
        otherwise be taken as the next request's answer)."""
        http = self.http
        return (
            http.our_state is h11.DONE
            and http.their_state is h11.DONE
            and http.trailing_data == (b"", False)
            and not self.wire.buffer
            and not self.wire.closed
        )

    def reusable(self, now: float) -> bool:
        """Still open, nothing unsolicited arrived while idle, and not idle for too long."""
        return not (
            self.wire.closed
            or self.wire.buffer
            or self.transport.is_closing()
            or now - self.idle_since > KEEPALIVE_EXPIRY
        )

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify): for broken or used-up ones."""
        self.transport.abort()


@attrs.frozen
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = attrs.field(repr=False)
    ssl_object: Any = attrs.field(repr=False)


class _StreamPool:
    """Kept-alive HTTPS/1.1 connections to one step-ca.

    h11 speaks the protocol; an asyncio TLS transport carries it. At most
    ``max_connections`` exchanges run at once (the others wait, up to
    ``timeout_seconds``); one exchange, connecting included, is bounded by
    ``timeout_seconds`` as a whole, so a CA that drips its answer cannot hold a connection
    longer. The answer's body is counted on the wire against ``max_response_bytes`` and a
    declared content coding is refused on the head, before any byte of the body is kept.
    A connection goes back to the pool only after a complete exchange that left nothing
    unread, and is reused for at most ``KEEPALIVE_EXPIRY`` seconds of idleness; any other
    is aborted.
    """

    def __init__(self, config: StepCAConfig, context: ssl.SSLContext) -> None:
        parts = urlsplit(config.ca_url)
        assert parts.hostname is not None  # the config validated it
        self.host, self.port = parts.hostname, parts.port or 443
        self._authority = parts.netloc.encode("ascii")
        self._context = context
        self._timeout = config.timeout_seconds
        self._limit = config.max_response_bytes
        self._slots = asyncio.Semaphore(config.max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable(now):
                return conn
            conn.abort()
        transport, wire = await loop.create_connection(
            lambda: _Wire(loop), self.host, self.port, ssl=self._context, server_hostname=self.host
        )
        return _Connection(transport, wire)

    async def send(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        content: Callable[[], bytes | None],
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
                    answer = await self._exchange(conn, method, path, headers, content())
            except BaseException:
                if conn is not None:
                    conn.abort()
                raise
            if conn.finished_cleanly() and not self._closed:
                conn.http.start_next_cycle()
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
    ) -> _Answer:
        http = conn.http
        sent = [(b"Host", self._authority), *headers]
        if content is not None:
            sent.append((b"Content-Length", str(len(content)).encode()))
        data = http.send(h11.Request(method=method, target=path, headers=sent)) or b""
        if content:
            data += http.send(h11.Data(data=content)) or b""
        data += http.send(h11.EndOfMessage()) or b""
        conn.transport.write(data)
        status, response_headers, chunks, size = 0, [], [], 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await conn.wire.read())
            elif isinstance(event, h11.Response):
                status, response_headers = event.status_code, list(event.headers)
                for name, value in response_headers:
                    coding = value.decode("latin-1").strip().lower()
                    if name == b"content-encoding" and coding not in ("", "identity"):
                        raise _CompressedError(coding)
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._limit:
                    raise _TooLargeError
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("the CA closed the connection mid-answer")
        ssl_object = conn.transport.get_extra_info("ssl_object")
        return _Answer(status, response_headers, b"".join(chunks), ssl_object)

    async def aclose(self) -> None:
        self._closed = True  # exchanges still running abort their connection at the end
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.transport.close()
        for conn in idle:
            try:
                async with asyncio.timeout(min(self._timeout, 5.0)):
                    await asyncio.shield(conn.wire.lost)
            except TimeoutError:
                conn.abort()


# -- the CA's intermediates, as its TLS handshake presents them ---------------------------


def _verified_chain(ssl_object: Any) -> list[x509.Certificate] | None:
    """The verified TLS chain (leaf first) through ``SSLObject.get_verified_chain()``,
    public from Python 3.13; None where that does not exist."""
    verified = getattr(ssl_object, "get_verified_chain", None)
    if verified is None:
        return None
    return [x509.load_der_x509_certificate(bytes(der)) for der in verified()]


async def _presented_chain(pool: _StreamPool, context: ssl.SSLContext) -> list[bytes]:
    """The certificates the CA sends in a TLS 1.2 handshake that ``context`` verifies.

    Python before 3.13 has no public accessor for the peer's chain (only its leaf), and
    step-ca has no endpoint for its intermediate. TLS 1.2 sends the Certificate message
    in clear (RFC 5246 7.4.2), so one handshake over a memory BIO is read off the wire;
    the handshake itself still verifies that chain against the pinned root.
    """
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=pool.host)
    transport, wire = await loop.create_connection(lambda: _Wire(loop), pool.host, pool.port)
    received = bytearray()
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                transport.write(outgoing.read())
                data = await wire.read()
                if not data:
                    raise _NoTLS12Error("the CA hung up during a TLS 1.2 handshake") from None
                received += data
                incoming.write(data)
    finally:
        transport.abort()
    return _tls12_certificates(bytes(received))


def _tls12_certificates(wire: bytes) -> list[bytes]:
    """The certificate_list of the TLS 1.2 Certificate message in the server's flight."""
    handshake, at = bytearray(), 0
    while at + 5 <= len(wire) and wire[at] == 22:  # handshake records, up to ChangeCipherSpec
        length = int.from_bytes(wire[at + 3 : at + 5], "big")
        handshake += wire[at + 5 : at + 5 + length]
        at += 5 + length
    at = 0
    while at + 4 <= len(handshake):
        kind, length = handshake[at], int.from_bytes(handshake[at + 1 : at + 4], "big")
        body = handshake[at + 4 : at + 4 + length]
        if kind == 11:  # Certificate: a 3-byte list length, then 3-byte-length entries
            certs, i = [], 3
            while i + 3 <= len(body):
                size = int.from_bytes(body[i : i + 3], "big")
                certs.append(bytes(body[i + 3 : i + 3 + size]))
                i += 3 + size
            return certs
        at += 4 + length
    return []


def _intermediates_of(
    chain: list[x509.Certificate], root: x509.Certificate
) -> tuple[x509.Certificate, ...]:
    """The certificates between leaf and root, if every link verifies up to ``root``."""
    path = [*chain] if chain and chain[-1] == root else [*chain, root]
    try:
        for child, parent in itertools.pairwise(path):
            child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return ()
    return tuple(path[1:-1])


class CAClient:
    """Sends requests to one step-ca over a pooled, root-pinned HTTPS connection pool."""

    def __init__(self, config: StepCAConfig, root: x509.Certificate | None):
        self._config = config
        self._root = root
        self._pool: _StreamPool | None = None
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._tls_intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def root(self) -> x509.Certificate | None:
        return self._root

    async def _ready(self) -> _StreamPool:
        """The pinned pool, made on first use (fetching the root first if only pinned)."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                if self._root is None:
                    self._root = await self._bootstrap_root()
                self._pool = _StreamPool(self._config, _ssl_context(self._root))
            return self._pool

    async def _bootstrap_root(self) -> x509.Certificate:
        """Fetch the root named by ``root_fingerprint`` and accept it only if it hashes to it.

        The one request made without TLS verification, on the same code path as every
        other (a pool of its own, closed right after); its answer is authenticated by the
        pinned SHA-256 instead, and every later request verifies TLS against that root.
        """
        pin = self._config.root_fingerprint
        assert pin is not None
        pool = _StreamPool(self._config, _unverified_context())
        try:
            response = await self._send(pool, "GET", f"/root/{pin}", None, None, pinned=False)
        finally:
            await pool.aclose()
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
        return await self.exchange(method, path, body, token=token, then=as_response)

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
        self._ensure_open()
        pool = await self._ready()

        async def run() -> T:
            return then(await self._send(pool, method, path, body, token))

        future = asyncio.ensure_future(run())
        self._inflight.add(future)
        future.add_done_callback(self._forget)
        return await asyncio.shield(future)

    def _ensure_open(self) -> None:
        if self._closed:
            raise IssuerClosedError(
                "this connector was closed",
                hint="the registry replaced or removed it; call through the registry",
            )

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled will not read it

    async def tls_intermediates(self) -> tuple[x509.Certificate, ...]:
        """The CA's intermediates as its TLS handshake presents them, verified up to the
        pinned root (step-ca's server certificate comes from its issuing intermediate).

        From Python 3.13 they are taken from the pooled connections' verified chain. Before
        that the only public way is one extra TLS 1.2 handshake read off the wire
        (:func:`_presented_chain`); a CA that refuses TLS 1.2 leaves them unknown (empty)
        until the first issuance shows the chain. Translated like any request.
        """
        if self._tls_intermediates:
            return self._tls_intermediates
        self._ensure_open()
        pool = await self._ready()
        root = self._root
        assert root is not None
        if hasattr(ssl.SSLObject, "get_verified_chain"):
            await self.request("GET", "/health")  # captured from the handshake's chain
            return self._tls_intermediates
        context = _ssl_context(root)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with self._translated("TLS", "handshake"):
            try:
                async with asyncio.timeout(self._config.timeout_seconds):
                    presented = await _presented_chain(pool, context)
            except (ssl.SSLError, _NoTLS12Error) as exc:
                if _is_tls_verification(exc):
                    raise
                # ca_chain() had /health answered just before: the CA is up, refusing TLS 1.2.
                log.debug("no TLS 1.2 handshake with the CA (%s); intermediates unknown", exc)
                return ()
        try:
            certs = [x509.load_der_x509_certificate(der) for der in presented]
        except (ValueError, x509.InvalidVersion):
            return ()
        self._tls_intermediates = _intermediates_of(certs, root)
        return self._tls_intermediates

    def _capture_chain(self, ssl_object: Any) -> None:
        """Keep the verified TLS chain's intermediates (leaf and root excluded), once."""
        if self._tls_intermediates or ssl_object is None or self._root is None:
            return
        try:
            chain = _verified_chain(ssl_object)
        except (ValueError, x509.InvalidVersion, ssl.SSLError):
            return
        if chain:
            self._tls_intermediates = _intermediates_of(chain, self._root)

    async def _send(
        self,
        pool: _StreamPool,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        token: Callable[[], str] | None,
        *,
        pinned: bool = True,
    ) -> CAResponse:
        """One exchange on ``pool``; identity coding only, so the body read is the body sent."""
        headers = [
            (b"User-Agent", _USER_AGENT),
            (b"Accept", b"application/json"),
            (b"Accept-Encoding", b"identity"),
        ]
        if body is not None or token is not None:
            headers.append((b"Content-Type", b"application/json"))

        def content() -> bytes | None:
            sent = body if token is None else {**(body or {}), "ott": token()}
            return None if sent is None else json.dumps(sent).encode()

        with self._translated(method, path):
            answer = await pool.send(method, path, headers, content)
        if pinned:
            self._capture_chain(answer.ssl_object)
        log.debug("%s %s -> %d (%d bytes)", method, path, answer.status, len(answer.body))
        return CAResponse(answer.status, ResponseHeaders(answer.headers), answer.body)

    @contextlib.contextmanager
    def _translated(self, method: str, path: str) -> Iterator[None]:
        """Turn the transport's exceptions into certctl errors (the only place that does)."""
        config = self._config
        try:
            yield
        except _PoolBusyError:
            raise CATimeoutError(
                f"{method} {path}: all {config.max_connections} connections to the CA stayed "
                f"busy for {config.timeout_seconds:g}s",
                hint="the CA answers slower than requests arrive; raise max_connections or "
                "timeout_seconds, or send fewer requests at once",
            ) from None
        except _TooLargeError:
            raise InvalidResponseError(
                f"the CA's answer to {method} {path} exceeds {config.max_response_bytes} bytes",
                hint="raise max_response_bytes if this CA really sends that much",
            ) from None
        except _CompressedError as exc:
            # A compressed answer could inflate a thousandfold inside one read (a gzip
            # bomb); step-ca never compresses, so it is refused, never decoded.
            raise InvalidResponseError(
                f"the CA's answer to {method} {path} is compressed ({exc.encoding[:40]}) "
                "although certctl asked for identity",
                hint="step-ca never compresses: is something between certctl and the CA "
                "rewriting answers?",
            ) from None
        except TimeoutError as exc:
            raise CATimeoutError(
                f"{method} {path}: the CA did not answer within "
                f"{config.timeout_seconds:g}s ({type(exc).__name__})",
                hint="check the CA's load and network; raise timeout_seconds if it is slow",
            ) from None
        except (OSError, h11.ProtocolError, ValueError) as exc:  # ssl.SSLError is an OSError
            if _is_tls_verification(exc):
                raise InvalidResponseError(
                    f"the CA's TLS certificate at {config.ca_url} does not chain to "
                    "the pinned root",
                    hint="the CA is behind a different root than root_cert_path / "
                    "root_fingerprint, or ca_url names a host its certificate lacks",
                ) from None
            raise CAUnreachableError(
                f"{method} {path}: cannot reach the CA at {config.ca_url} "
                f"({type(exc).__name__}: {exc})",
                hint="is step-ca running and is ca_url right?",
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
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()
