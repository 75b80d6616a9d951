"""Challenge solvers: http-01 (own responder or webroot) and dns-01 (operator hook).

Each solver's ``present`` returns an undo callable; the connector runs every undo in a
``finally`` (failure and cancellation included). The http-01 responder for one address
is shared by every connector of the process (port 80 exists once) and runs only while
at least one challenge is presented.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import re
import signal
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Self, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certctl_acme._jose import b64url
from certctl_core import (
    CertctlError,
    ConfigError,
    ConfigProblem,
    InvalidResponseError,
    RejectedError,
    TransientError,
)

__all__ = [
    "ACME_TLS_ALPN",
    "TOKEN",
    "HOOK_BASE_ENV",
    "DnsHook",
    "HttpResponder",
    "TlsAlpnResponder",
    "Undo",
    "Webroot",
    "dns_txt_value",
    "scrub_output",
]

log = logging.getLogger(__name__)
Undo = Callable[[], Awaitable[None]]
_MAX_REQUEST = 8192
#: A challenge token (RFC 8555 section 8.1: base64url, at least 128 bits of entropy).
#: Anything else is refused before it reaches a file name, a TLS certificate or a hook.
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,256}")


def dns_txt_value(key_authorization: str) -> str:
    return b64url(hashlib.sha256(key_authorization.encode("ascii")).digest())


class _SharedListener:
    """A listener shared by every issuer of the process on one address, running only while
    challenges are presented on it (``_open`` when the first arrives, ``_release`` after
    the last). Subclasses keep their own ``_by_address``."""

    _by_address: ClassVar[dict[tuple[str | None, int], Any]]

    def __init__(self, host: str | None, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._users = 0
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: connection handlers still running, cancelled when the listener closes
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    def for_address(cls, host: str | None, port: int) -> Self:
        loop = asyncio.get_running_loop()
        found = cls._by_address.get((host, port))
        if found is None or found._loop is not loop:
            found = cls(host, port)
            found._loop = loop
            if port != 0:
                cls._by_address[(host, port)] = found
        return cast(Self, found)

    async def _open(
        self,
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        field: str,
        hint: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Start listening unless already (call with ``_lock`` held) and count a user."""
        if self._server is None:
            try:
                self._server = await asyncio.start_server(serve, self.host, self.port, ssl=tls)
            except OSError as exc:
                raise ConfigError(
                    [
                        ConfigProblem(
                            field,
                            f"cannot listen on {self.host or '*'}:{self.port}: {exc.strerror}",
                            hint,
                        )
                    ]
                ) from None
        self._users += 1

    async def _release(self) -> None:
        """Count a user out (call with ``_lock`` held); the last one closes the listener."""
        self._users -= 1
        if self._users == 0 and self._server is not None:
            server, self._server = self._server, None
            server.close()
            for task in list(self._handlers):
                task.cancel()
            await server.wait_closed()


class HttpResponder(_SharedListener):
    """Serves ``/.well-known/acme-challenge/<token>`` on one address, shared per address."""

    _by_address: ClassVar[dict[tuple[str | None, int], Any]] = {}  # process-wide

    def __init__(self, host: str | None, port: int) -> None:
        super().__init__(host, port)
        self.tokens: dict[str, str] = {}

    @property
    def bound_port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def present(self, token: str, key_authorization: str) -> Undo:
        async with self._lock:
            await self._open(
                self._serve,
                "http_address",
                "free the port (another web server?), run with the right to bind it, or use "
                "webroot mode",
            )
            self.tokens[token] = key_authorization

        async def undo() -> None:
            async with self._lock:
                self.tokens.pop(token, None)
                await self._release()

        return undo

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if len(head) > _MAX_REQUEST:
                return
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            prefix = "/.well-known/acme-challenge/"
            answer = self.tokens.get(path[len(prefix) :]) if path.startswith(prefix) else None
            if method != "GET" or answer is None:
                writer.write(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            else:
                body = answer.encode("ascii")
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            await writer.drain()
        except (
            OSError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)


class Webroot:
    """Writes the key authorization under ``<webroot>/.well-known/acme-challenge/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def present(self, token: str, key_authorization: str) -> Undo:
        directory = self.root / ".well-known" / "acme-challenge"
        path = directory / token
        if not TOKEN.fullmatch(token):  # the connector checks first: never a path
            raise InvalidResponseError("the ACME challenge token is not base64url")
        tmp = directory / f".{token}.{os.getpid()}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if path.resolve().parent != directory.resolve():
                raise InvalidResponseError("the ACME challenge token names another directory")
            # O_EXCL|O_NOFOLLOW: never through a symlink someone planted in the webroot.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(key_authorization.encode("ascii"))
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)  # replaces a symlink at path, never follows it
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        except OSError as exc:
            raise ConfigError(
                [
                    ConfigProblem(
                        "webroot",
                        f"cannot write {path}: {exc.strerror}",
                        "make it writable for certctl",
                    )
                ]
            ) from None

        async def undo() -> None:
            with contextlib.suppress(OSError):
                path.unlink()

        return undo


#: What a dns_hook inherits from certctl's environment besides ``dns_hook_env``: never
#: the rest (the server's key, database URL, API tokens, CA passwords live there).
HOOK_BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
#: The hook's output kept for the error (its tail); the rest is read and dropped.
_HOOK_OUTPUT_TAIL = 300
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|passw|pwd|credential|auth|cookie|session)")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b([\w.-]*(?:key|token|secret|passw\w*|pwd|credential\w*|auth\w*|cookie)[\w.-]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)


def scrub_output(text: str, environment: dict[str, str]) -> str:
    """``text`` with secret-looking values replaced by ``***``: ``name=value`` pairs whose
    name looks secret, and the values of such variables in ``environment``."""
    for name, value in environment.items():
        if len(value) >= 4 and _SECRET_NAME.search(name):
            text = text.replace(value, "***")
    return _SECRET_ASSIGNMENT.sub(r"\1\2***", text)


class DnsHook:
    """Runs the operator's hook: ``<hook> present|cleanup`` with the record in its environment.

    Environment: only ``HOOK_BASE_ENV`` and the variables named in ``pass_env`` from
    certctl's, plus ``CERTCTL_ACME_DOMAIN`` (the identifier, without ``*.``),
    ``CERTCTL_ACME_TXT_NAME`` (``_acme-challenge.<domain>.``, with the trailing dot),
    ``CERTCTL_ACME_TXT_VALUE`` (the record's value), ``CERTCTL_ACME_ACTION``. The hook
    runs in its own session: on timeout or cancellation its whole process group is
    killed.
    """

    def __init__(
        self,
        argv: tuple[str, ...],
        propagation_seconds: float,
        timeout: float,
        pass_env: tuple[str, ...] = (),
    ) -> None:
        self.argv = argv
        self.propagation = propagation_seconds
        self.timeout = timeout
        self.pass_env = pass_env

    def environment(self) -> dict[str, str]:
        """What the hook inherits (without the per-call ``CERTCTL_ACME_*`` variables)."""
        env = {
            name: os.environ[name]
            for name in (*HOOK_BASE_ENV, *self.pass_env)
            if name in os.environ
        }
        env.setdefault("PATH", os.defpath)
        return env

    async def _run(self, action: str, domain: str, value: str) -> None:
        inherited = self.environment()
        env = {
            **inherited,
            "CERTCTL_ACME_ACTION": action,
            "CERTCTL_ACME_DOMAIN": domain,
            "CERTCTL_ACME_TXT_NAME": f"_acme-challenge.{domain}.",
            "CERTCTL_ACME_TXT_VALUE": value,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                action,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: killed as a whole
            )
        except OSError as exc:
            raise RejectedError(
                f"the dns_hook could not be started for {action}: {exc.strerror}",
                hint="check dns_hook: the file must exist and be executable",
            ) from None
        tail = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                assert process.stdout is not None
                while chunk := await process.stdout.read(65536):
                    tail += chunk
                    del tail[:-_HOOK_OUTPUT_TAIL]
                await process.wait()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise TransientError(
                    f"the dns_hook did not finish {action} {domain} in {self.timeout:g} s",
                    retry_after=60.0,
                    hint="make the hook return once the record is published (it and its "
                    "children were killed)",
                ) from None
            raise
        if process.returncode != 0:
            output = scrub_output(bytes(tail).decode("utf-8", "replace").strip(), inherited)
            raise RejectedError(
                f"the dns_hook failed ({action} {domain}): exit status {process.returncode}",
                ca_message=output or None,
                hint="run the hook by hand with the documented environment",
            )

    async def present(self, domain: str, key_authorization: str) -> Undo:
        value = dns_txt_value(key_authorization)

        async def undo() -> None:
            try:
                await self._run("cleanup", domain, value)
            except CertctlError as exc:
                log.warning("dns_hook cleanup of %s failed: %s", domain, exc)

        try:  # a hook that failed half-way may have published: clean up then too
            await self._run("present", domain, value)
            if self.propagation:
                await asyncio.sleep(self.propagation)
        except BaseException:
            await undo()
            raise
        return undo


#: The ALPN protocol of tls-alpn-01 (RFC 8737) and its certificate extension.
ACME_TLS_ALPN = "acme-tls/1"
_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def _server_name(identifier: str) -> str:
    """The SNI a validator sends: the name, or an IP's reverse name (RFC 8738 section 6)."""
    try:
        return ipaddress.ip_address(identifier).reverse_pointer
    except ValueError:
        return identifier.lower()


def _alpn_context(identifier: str, key_authorization: str) -> ssl.SSLContext:
    """A TLS context presenting the RFC 8737 validation certificate for ``identifier``."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    try:
        name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(identifier))
    except ValueError:
        name = x509.DNSName(identifier)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "certctl tls-alpn-01")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([name]), critical=False)
        # acmeIdentifier: the DER OCTET STRING of SHA-256(key authorization)
        .add_extension(
            x509.UnrecognizedExtension(_ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols([ACME_TLS_ALPN])
    with tempfile.TemporaryDirectory() as directory:  # load_cert_chain reads files only
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.touch(0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_file, key_file)
    return context


class TlsAlpnResponder(_SharedListener):
    """tls-alpn-01 (RFC 8737): a TLS listener that presents, per SNI, the validation
    certificate of each presented identifier; shared per address like the http-01 one."""

    _by_address: ClassVar[dict[tuple[str | None, int], Any]] = {}  # process-wide

    def __init__(self, host: str | None, port: int) -> None:
        super().__init__(host, port)
        #: SNI -> the validation contexts presented for it, newest last (two orders for
        #: one name each present their own; each undo removes its own).
        self.contexts: dict[str, list[ssl.SSLContext]] = {}

    def _pick(
        self, connection: ssl.SSLObject, name: str | None, _base: ssl.SSLContext
    ) -> int | None:
        stack = self.contexts.get((name or "").lower())
        if not stack:
            return int(ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME)
        connection.context = stack[-1]
        return None

    async def present(self, identifier: str, key_authorization: str) -> Undo:
        name = _server_name(identifier)
        context = await asyncio.to_thread(_alpn_context, identifier, key_authorization)
        async with self._lock:
            base = None
            if self._server is None:
                base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                base.set_alpn_protocols([ACME_TLS_ALPN])
                base.sni_callback = self._pick
            await self._open(
                self._serve,
                "tls_address",
                "free the port (a web server on 443?) or run with the right to bind it",
                base,
            )
            self.contexts.setdefault(name, []).append(context)

        async def undo() -> None:
            async with self._lock:
                stack = self.contexts.get(name, [])
                for index, each in enumerate(stack):
                    if each is context:
                        del stack[index]
                        break
                if not stack:
                    self.contexts.pop(name, None)
                await self._release()

        return undo

    async def _serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The handshake is the whole validation: nothing to read or write.
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
            await writer.wait_closed()
