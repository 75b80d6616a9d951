"""HTTP to step-ca: one pooled client, TLS pinned to the configured root, bounded answers.

Exchanges run on httpcore's blocking connection pool (the engine under httpx) in a
thread pool of the connector's own (``max_connections`` threads), not on
``httpx.AsyncClient``: measured against a real step-ca, a request costs ~0.8 ms of CPU
through ``httpx.AsyncClient`` (anyio's TLS stream over asyncio), ~0.47 ms through
``httpx.Client`` and ~0.24 ms through ``httpcore.ConnectionPool``, and the blocking
pool's socket and TLS work runs outside the GIL, off the event loop (ADR 0016). An
injected ``transport`` (tests simulating faults a real CA cannot produce) is an async
httpx transport, used through ``httpx.AsyncClient`` on the loop with the same error
translation.

This is the one place where ``httpx`` and ``ssl`` exceptions become certctl errors:
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
import httpcore
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl_core import (
    CATimeoutError,
    CAUnreachableError,
    ConfigError,
    ConfigProblem,
    InvalidResponseError,
)
from certctl_core.errors import Where
from certctl_stepca.config import StepCAConfig

__all__ = ["CAClient", "CAResponse", "load_root", "parse_retry_after"]

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 300.0

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
        except (ValueError, UnicodeDecodeError):
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
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem("root_cert_path", f"cannot read {path}: {exc.strerror}")]
        ) from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
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


class CAClient:
    """Sends requests to one step-ca over a pooled, root-pinned ``httpx`` client."""

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
        self._blocking: httpcore.ConnectionPool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Future[Any]] = set()
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
            "headers": {"User-Agent": "certctl-stepca/0.1"},
            "trust_env": False,
        }

    def _make_client(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self._transport, **self._options(verify))

    async def _ready(self) -> None:
        """Create the pinned client on first use (fetching the root first if only pinned)."""
        if self._client is not None or self._blocking is not None:
            return
        async with self._lock:
            if self._client is not None or self._blocking is not None:
                return
            if self._root is None:
                self._root = await self._bootstrap_root()
            context = _ssl_context(self._root)
            if self._transport is not None:
                self._client = self._make_client(context)
            else:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._config.max_connections,
                    thread_name_prefix=f"certctl-stepca-{self._where.get('issuer_id')}",
                )
                self._blocking = httpcore.ConnectionPool(
                    ssl_context=context,
                    max_connections=self._config.max_connections,
                    max_keepalive_connections=self._config.max_connections,
                )

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
        except ValueError:
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

        ``token()``, when given, is called just before sending, in the thread that sends,
        and its result is sent as the body's ``ott``: one-time tokens are minted as late
        as possible. ``then(response)`` runs in the same thread right after the answer
        (parsing and verifying a certificate there keeps the event loop free and costs no
        second thread hop); what it raises is raised to the caller.

        The exchange runs apart from the caller (in the pool's thread, or in its own task
        with an injected transport), shielded from the caller's cancellation: a
        connection cancelled mid-handshake is leaked by httpcore, so a cancelled call
        returns at once while its exchange finishes (bounded by ``timeout_seconds``) and
        hands the connection back to the pool. ``aclose`` waits for such exchanges.
        """
        await self._ready()
        future: asyncio.Future[T]
        if self._blocking is not None:
            pool = self._blocking

            def blocking() -> T:
                return then(self._send_blocking(pool, method, path, body, token))

            future = asyncio.get_running_loop().run_in_executor(self._executor, blocking)
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

    def _capture_chain(self, response: httpx.Response | httpcore.Response) -> None:
        """Keep the verified TLS chain's intermediates (leaf and root excluded), once."""
        if self._tls_intermediates:
            return
        stream = response.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        if ssl_object is None:
            return
        # Public in Python 3.13; the same method lives on the private object before that.
        verified = getattr(ssl_object, "get_verified_chain", None)
        if verified is None:
            verified = getattr(getattr(ssl_object, "_sslobj", None), "get_verified_chain", None)
        try:
            chain = verified() if verified is not None else []
            # _ssl.Certificate.public_bytes() gives PEM text by default.
            certs = [x509.load_pem_x509_certificate(c.public_bytes().encode()) for c in chain]
        except (ValueError, TypeError, AttributeError, ssl.SSLError):
            return
        self._tls_intermediates = tuple(certs[1:-1])

    def _too_large(self, method: str, path: str) -> InvalidResponseError:
        limit = self._config.max_response_bytes
        return InvalidResponseError(
            f"the CA's answer to {method} {path} exceeds {limit} bytes",
            hint="raise max_response_bytes if this CA really sends that much",
            **self._where,
        )

    def _send_blocking(
        self,
        pool: httpcore.ConnectionPool,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        token: Callable[[], str] | None = None,
    ) -> CAResponse:
        """One exchange on the blocking pool; runs in the pool's thread.

        No content decoding is asked for (no Accept-Encoding), so the body read is the
        body sent and the size bound holds.
        """
        limit = self._config.max_response_bytes
        if token is not None:
            body = {**(body or {}), "ott": token()}
        headers = [(b"User-Agent", b"certctl-stepca/0.1"), (b"Accept", b"application/json")]
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers.append((b"Content-Type", b"application/json"))
        seconds = self._config.timeout_seconds
        timeouts = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        with (
            self._translated(method, path),
            pool.stream(
                method,
                self._config.ca_url + path,
                headers=headers,
                content=content,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            self._capture_chain(response)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_stream():
                size += len(chunk)
                if size > limit:
                    raise self._too_large(method, path)
                chunks.append(chunk)
            log.debug("%s %s -> %d (%d bytes)", method, path, response.status, size)
            return CAResponse(response.status, httpx.Headers(response.headers), b"".join(chunks))

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
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():  # decoded: bounds gzip bombs too
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
        except (httpx.TimeoutException, httpcore.TimeoutException) as exc:
            raise CATimeoutError(
                f"{method} {path}: the CA did not answer within "
                f"{self._config.timeout_seconds:g}s ({type(exc).__name__})",
                hint="check the CA's load and network; raise timeout_seconds if it is slow",
                **self._where,
            ) from None
        except (
            httpx.TransportError,
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
        ) as exc:
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
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        client, self._client = self._client, None
        blocking, self._blocking = self._blocking, None
        executor, self._executor = self._executor, None
        if client is not None:
            await client.aclose()
        if blocking is not None:
            blocking.close()
        if executor is not None:
            executor.shutdown(wait=False)
