"""A TLS-terminating HTTP/1.1 fault proxy between a client and a real step-ca.

The proxy runs its own event loop in a daemon thread, so synchronous tests, async tests
and benchmarks can all use it, and its tasks never show up in the caller's loop. It
presents a TLS certificate for ``127.0.0.1``/``localhost`` issued by the step-ca's own
intermediate, so a client that pins the CA's root trusts the proxy exactly as it trusts
the CA; every client connection gets its own upstream TLS connection (1:1, like an L4
balancer), and HTTP messages are framed with ``h11`` on both sides.

Because it sees requests in clear, it records every one (method, path, the one-time
token's ``jti``, the CA's status) and can inject one fault per request::

    with FaultProxy.for_stepca(ca, tmp_path) as proxy:
        proxy.inject(Fault.DROP_AFTER_FORWARD, path="/1.0/sign", times=1)
        ...  # the client talks to proxy.url
        assert len(set(proxy.jtis("/1.0/sign"))) == len(proxy.jtis("/1.0/sign"))

Faults (see :class:`Fault`): added latency, a TCP reset before forwarding, a reset after
the CA processed the request (the answer is lost), a black hole (read, never answer), a
replacement answer (oversized, endless, dripping, compressed, garbage, or bytes that are
not HTTP at all) and unsolicited bytes right after the CA's real answer. When the
upstream is down or dies mid-request, the client connection is reset, as a TCP proxy
would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import enum
import ipaddress
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs
import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._files import write_private

if TYPE_CHECKING:
    from ._pki import PKI
    from ._process import StepCA

__all__ = ["Fault", "FaultProxy", "ProxiedRequest", "ProxyFaults", "Replacement"]

_READ_SIZE = 65536
_STOP_TIMEOUT_S = 5.0
_STALL_S = 2.0


class Fault(enum.Enum):
    """What the proxy does with a request a rule matches."""

    #: Forward untouched.
    NONE = "none"
    #: Wait ``delay`` seconds, then forward.
    DELAY = "delay"
    #: Reset the client connection (TCP RST) on receipt; the CA never sees the request.
    RESET = "reset"
    #: Forward, read the CA's whole answer (the CA processed the request), then reset the
    #: client connection: the answer is lost.
    DROP_AFTER_FORWARD = "drop_after_forward"
    #: Read the request and never answer (until the client gives up or the proxy stops).
    BLACKHOLE = "blackhole"
    #: Answer with the rule's :class:`Replacement` instead of forwarding.
    REPLACE = "replace"
    #: Forward, then write the rule's ``Replacement.raw`` bytes right after the CA's answer
    #: on the same kept-alive connection (an answer nobody asked for).
    APPEND = "append"


@attrs.frozen
class Replacement:
    """An answer the proxy sends instead of the CA's: ``chunk`` sent ``repeat`` times
    (``None``: forever, until the client hangs up), chunked unless ``content_length``,
    with a pause of ``interval`` seconds between chunks (a CA dripping its answer).
    With ``raw``, those bytes are written as they are instead (a peer that does not speak
    HTTP; with :attr:`Fault.APPEND`, what follows the CA's answer)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    chunk: bytes = b"{}"
    repeat: int | None = 1
    content_length: bool = True
    interval: float = 0.0
    raw: bytes | None = None


#: A replacement, or a function making one per request (in the proxy's thread).
Answer = Replacement | Callable[[], Replacement]


@attrs.frozen
class _Rule:
    fault: Fault
    path: str | None
    times: int | None
    delay: float
    replacement: Answer | None


@attrs.frozen
class ProxiedRequest:
    """One request the proxy received, the fault applied, and the CA's status if forwarded."""

    method: str
    path: str
    jti: str | None
    fault: Fault
    upstream_status: int | None
    #: The whole one-time token, for tests that must prove it appears nowhere else.
    token: str | None = attrs.field(default=None, repr=False)


@attrs.define(eq=False)
class _Record:
    method: str
    path: str
    jti: str | None
    fault: Fault
    token: str | None = attrs.field(repr=False)
    upstream_status: int | None = None

    def frozen(self) -> ProxiedRequest:
        return ProxiedRequest(
            self.method, self.path, self.jti, self.fault, self.upstream_status, self.token
        )


class _UpstreamLost(Exception):
    """The CA could not be reached or closed the connection mid-exchange."""


def _token(body: bytes) -> tuple[str | None, str | None]:
    """The ``ott`` in a JSON body and its ``jti`` (None for what is not there)."""
    try:
        token = json.loads(body)["ott"]
    except (ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(token, str):
        return None, None
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        jti = claims["jti"]
    except (ValueError, KeyError, IndexError, TypeError):
        return token, None
    return token, jti if isinstance(jti, str) else None


def _serve_certificate(pki: PKI, directory: Path) -> tuple[Path, Path]:
    """A TLS server certificate for 127.0.0.1/localhost from the PKI's intermediate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certctl fault proxy")]))
        .issuer_name(pki.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(pki.intermediate_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    chain = cert.public_bytes(serialization.Encoding.PEM) + pki.intermediate_pem
    cert_path = write_private(directory / "proxy.crt", chain, 0o644)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = write_private(directory / "proxy.key", key_pem, 0o600)
    return cert_path, key_path


class FaultProxy:
    """See the module docstring. Start with :meth:`start` or as a context manager."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        upstream_ssl: ssl.SSLContext,
        server_ssl: ssl.SSLContext,
        port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._upstream_ssl = upstream_ssl
        self._server_ssl = server_ssl
        self.port = port
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._records: list[_Record] = []
        self._open = 0
        self._accepted = 0
        self._peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_stepca(cls, ca: StepCA, workdir: Path) -> FaultProxy:
        """A proxy in front of ``ca`` whose TLS certificate chains to the CA's root."""
        cert_path, key_path = _serve_certificate(ca.pki, workdir)
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert_path, key_path)
        return cls("127.0.0.1", ca.port, upstream_ssl=ca.ssl_context(), server_ssl=server_ssl)

    # -- addresses and records ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[ProxiedRequest]:
        """Every request received so far, in order of arrival."""
        with self._lock:
            return [r.frozen() for r in self._records]

    def jtis(self, path: str | None = None) -> list[str]:
        """The one-time token ids of the requests received (to ``path``, if given)."""
        return [r.jti for r in self.requests if r.jti and (path is None or r.path == path)]

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        with self._lock:
            return self._open

    @property
    def peak_connections(self) -> int:
        """The most client connections open at once since start."""
        with self._lock:
            return self._peak

    @property
    def accepted_connections(self) -> int:
        """Client connections accepted since start."""
        with self._lock:
            return self._accepted

    def clear_records(self) -> None:
        with self._lock:
            self._records.clear()

    # -- faults -------------------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        path: str | None = None,
        times: int | None = None,
        delay: float = 0.0,
        replacement: Answer | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests (``None``: every one) whose path
        starts with ``path`` (``None``: any). Rules are tried in the order injected.
        ``replacement`` may be a function, called for each request it answers."""
        if fault in (Fault.REPLACE, Fault.APPEND) and replacement is None:
            raise ValueError(f"{fault} needs a replacement answer")
        if fault is Fault.APPEND and isinstance(replacement, Replacement) and not replacement.raw:
            raise ValueError("Fault.APPEND needs Replacement.raw bytes")
        with self._lock:
            self._rules.append(_Rule(fault, path, times, delay, replacement))

    def clear_faults(self) -> None:
        """Forward everything from now on (requests already held stay held)."""
        with self._lock:
            self._rules.clear()

    def _take_rule(self, path: str) -> _Rule:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.path is None or path.startswith(rule.path):
                    if rule.times is not None:
                        if rule.times <= 1:
                            del self._rules[index]
                        else:
                            self._rules[index] = attrs.evolve(rule, times=rule.times - 1)
                    return rule
        return _Rule(Fault.NONE, None, None, 0.0, None)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``127.0.0.1:port`` (a free port when 0) in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self._server_ssl)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="certctl-fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self) -> None:
        """Close the listener and every connection, and stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(_STOP_TIMEOUT_S)
        except TimeoutError:
            future.cancel()  # stop the loop anyway; its connections die with the thread
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT_S)
        self._loop, self._thread, self._server = None, None, None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no client connection is open; whether that happened in ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.open_connections:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- one client connection ------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._open += 1
            self._accepted += 1
            self._peak = max(self._peak, self._open)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await self._serve(reader, writer)
        except (OSError, h11.ProtocolError, ssl.SSLError, _UpstreamLost):
            _reset(writer)
        except asyncio.CancelledError:
            _reset(writer)
        finally:
            if upstream is not None:
                _reset(upstream[1])
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), _STALL_S)
            with self._lock:
                self._open -= 1
            self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Serve requests on one client connection; returns the upstream to close."""
        server = h11.Connection(h11.SERVER)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        client: h11.Connection | None = None
        try:
            while True:
                if upstream is None:
                    message = await _read_message(server, reader)
                else:
                    try:
                        message = await _next_unless_upstream_closes(server, reader, upstream[0])
                    except _UpstreamHungUp:
                        # Mirror the CA closing an idle keep-alive connection, as a TCP
                        # proxy would: the client sees a clean close, not a reset.
                        return upstream
                if message is None:
                    return upstream
                request, body = message
                assert isinstance(request, h11.Request)
                path = request.target.decode("latin-1")
                rule = self._take_rule(path)
                token, jti = _token(body)
                record = _Record(request.method.decode(), path, jti, rule.fault, token)
                with self._lock:
                    self._records.append(record)
                if rule.fault is Fault.RESET:
                    _reset(writer)
                    return upstream
                if rule.fault is Fault.BLACKHOLE:
                    while await reader.read(_READ_SIZE):
                        pass
                    return upstream
                if rule.fault is Fault.DELAY:
                    await asyncio.sleep(rule.delay)
                if rule.fault is Fault.REPLACE:
                    await _send_replacement(server, reader, writer, _answer(rule))
                    return upstream  # replaced answers end the connection
                if upstream is None:
                    upstream = await self._connect_upstream()
                    client = h11.Connection(h11.CLIENT)
                assert client is not None
                response, events = await _exchange(client, upstream, request, body)
                record.upstream_status = response.status_code
                if rule.fault is Fault.DROP_AFTER_FORWARD:
                    _reset(writer)
                    return upstream
                for event in (response, *events):
                    writer.write(server.send(event) or b"")
                if rule.fault is Fault.APPEND:
                    writer.write(_answer(rule).raw or b"")
                await writer.drain()
                if client.our_state is h11.DONE and client.their_state is h11.DONE:
                    client.start_next_cycle()
                else:
                    _reset(upstream[1])
                    upstream, client = None, None
                if server.our_state is not h11.DONE or server.their_state is not h11.DONE:
                    return upstream
                server.start_next_cycle()
        except BaseException:
            if upstream is not None:
                _reset(upstream[1])
            raise

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(
                self.upstream_host,
                self.upstream_port,
                ssl=self._upstream_ssl,
                server_hostname=self.upstream_host,
            )
        except (OSError, ssl.SSLError) as exc:
            raise _UpstreamLost(str(exc)) from exc


class _UpstreamHungUp(Exception):
    """The CA closed an idle keep-alive connection."""


async def _next_unless_upstream_closes(
    server: h11.Connection, reader: asyncio.StreamReader, upstream: asyncio.StreamReader
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """The client's next message; _UpstreamHungUp if the CA hangs up first."""
    if server.their_state is h11.IDLE and not server.trailing_data[0]:
        # Idle: wait for the first bytes of the next request or for the CA to hang up.
        first = asyncio.ensure_future(reader.read(_READ_SIZE))
        hangup = asyncio.ensure_future(upstream.read(1))
        try:
            await asyncio.wait({first, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (first, hangup):
                if not task.done():
                    task.cancel()
            await asyncio.gather(first, hangup, return_exceptions=True)
        # The CA hung up (possibly in the same loop turn as the client's next bytes): the
        # request has nowhere to go, so the client connection is closed, as step-ca's would be.
        if first.cancelled() or (hangup.done() and not hangup.cancelled()):
            raise _UpstreamHungUp
        data = first.result()  # a client error propagates
        if not data:
            return None
        server.receive_data(data)
    return await _read_message(server, reader)


async def _read_message(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """One whole message (head and body); None when the peer closed between messages."""
    head: h11.Request | h11.Response | None = None
    body: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            if not data and head is None and conn.their_state is h11.IDLE:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, b"".join(body)
        elif isinstance(event, h11.ConnectionClosed):
            if head is None:
                return None
            raise _UpstreamLost("connection closed mid-message")
        # InformationalResponse and PAUSED are not expected from step-ca or httpx.


async def _exchange(
    client: h11.Connection,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    request: h11.Request,
    body: bytes,
) -> tuple[h11.Response, Sequence[h11.Data | h11.EndOfMessage]]:
    """Send the request upstream and read the whole answer; _UpstreamLost if it fails."""
    reader, writer = upstream
    try:
        out = client.send(
            h11.Request(method=request.method, target=request.target, headers=list(request.headers))
        )
        writer.write(out or b"")
        if body:
            writer.write(client.send(h11.Data(data=body)) or b"")
        writer.write(client.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        message = await _read_message(client, reader)
    except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
        raise _UpstreamLost(str(exc)) from exc
    if message is None:
        raise _UpstreamLost("the CA closed the connection without answering")
    response, answer = message
    assert isinstance(response, h11.Response)
    events: list[h11.Data | h11.EndOfMessage] = []
    if answer:
        events.append(h11.Data(data=answer))
    events.append(h11.EndOfMessage())
    return response, events


def _answer(rule: _Rule) -> Replacement:
    made = rule.replacement
    assert made is not None
    return made if isinstance(made, Replacement) else made()


async def _send_replacement(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: Replacement,
) -> None:
    if answer.raw is not None:
        writer.write(answer.raw)
        await writer.drain()
        return
    headers = [(k.encode(), v.encode()) for k, v in answer.headers]
    if answer.content_length and answer.repeat is not None:
        length = len(answer.chunk) * answer.repeat
        headers.append((b"content-length", str(length).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    headers.append((b"connection", b"close"))
    writer.write(conn.send(h11.Response(status_code=answer.status, headers=headers)) or b"")
    sent = 0
    while answer.repeat is None or sent < answer.repeat:
        # A TLS transport does not report a lost peer through is_closing() (writes are
        # dropped silently), so watch the reading side too; a client that stops reading
        # without hanging up is dropped after _STALL_S.
        if writer.transport.is_closing() or reader.at_eof() or reader.exception():
            raise ConnectionResetError("the client hung up")
        writer.write(conn.send(h11.Data(data=answer.chunk)) or b"")
        await asyncio.wait_for(writer.drain(), _STALL_S)
        sent += 1
        if answer.interval:
            await asyncio.sleep(answer.interval)
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), not a graceful close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ProxyFaults:
    """The contract suite's ``CAFaults`` for a CA behind ``proxy``: connections reset
    (unreachable), answers delayed (slow), ``busy`` in place of every answer (erroring)."""

    def __init__(self, proxy: FaultProxy, busy: Replacement) -> None:
        self._proxy = proxy
        self._busy = busy

    @contextlib.asynccontextmanager
    async def _inject(self, fault: Fault, **options: Any) -> AsyncIterator[None]:
        self._proxy.inject(fault, **options)
        try:
            yield
        finally:
            self._proxy.clear_faults()

    def unreachable(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._inject(Fault.RESET)

    def slow(self, seconds: float) -> contextlib.AbstractAsyncContextManager[None]:
        return self._inject(Fault.DELAY, delay=seconds)

    def erroring(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._inject(Fault.REPLACE, replacement=self._busy)
