"""The ACME wire: directory, nonces, signed POSTs, problem documents -> certctl errors.

Every request to the CA goes through :meth:`AcmeClient.request`; foreign exceptions
(httpx, JSON) are translated there and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

import attrs
import httpx

from certctl_acme._jose import AccountKey
from certctl_core import (
    AuthenticationError,
    CATimeoutError,
    CAUnavailableError,
    CAUnreachableError,
    CertctlError,
    InvalidRequestError,
    InvalidResponseError,
    IssuerClosedError,
    PolicyViolationError,
    RejectedError,
    UnsupportedCapabilityError,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "AcmeClient",
    "AcmeProblem",
    "Answer",
    "problem_error",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)
_ERR = "urn:ietf:params:acme:error:"
_JOSE = "application/jose+json"
#: Problem types (without the urn prefix) -> what retrying or the operator can do.
_HINTS = {
    "rateLimited": "the CA limits how often you may ask; wait retry_after seconds",
    "rejectedIdentifier": "the CA will not issue for one of these names (its policy)",
    "unauthorized": "the account may not do this: a failed challenge, another account's "
    "certificate, or a wrong EAB key",
    "externalAccountRequired": "this CA requires External Account Binding: set eab_kid "
    "and eab_hmac_key to the values the CA gave you",
    "accountDoesNotExist": "the account key is unknown to the CA",
    "badCSR": "the CSR does not match the order (names, key) or the CA's rules",
    "badRevocationReason": "the CA refuses this revocation reason",
    "unsupportedIdentifier": "this CA does not issue for this kind of identifier",
    "invalidProfile": "the profile is not one the CA's directory lists (meta.profiles)",
    "connection": "the CA could not connect to the challenge responder (port 80 for "
    "http-01, or the name does not resolve to this host)",
    "dns": "the CA could not find the TXT record: check dns_hook and propagation",
    "incorrectResponse": "the CA fetched a wrong challenge answer (another server on port 80?)",
    "caa": "a CAA record forbids this CA",
    "userActionRequired": "visit the CA's instance URL to accept its terms",
    "alreadyReplaced": "a finalized order already replaced this certificate: renew "
    "without replaces, or renew the replacement",
    "agreementRequired": "read the CA's terms (directory meta.termsOfService), then set "
    "terms_of_service_agreed: true",
    "serverInternal": "a lasting 500 from step-ca on finalize is often a notAfter beyond the "
    "provisioner's maxTLSCertDuration: ask for a shorter validity",
}


@attrs.frozen
class AcmeProblem:
    type: str
    detail: str
    status: int
    subproblems: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return self.type.removeprefix(_ERR)


@attrs.frozen
class Answer:
    status: int
    headers: httpx.Headers = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    #: The request's URL: relative Location and Link URLs are resolved against it.
    url: str = ""

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidResponseError("the ACME server answered with invalid JSON") from None
        if not isinstance(value, dict):
            raise InvalidResponseError("the ACME server answered JSON that is not an object")
        return value

    @property
    def location(self) -> str | None:
        value = self.headers.get("location")
        return urljoin(self.url, value.strip()) if isinstance(value, str) and value else None

    def links(self, rel: str) -> list[str]:
        out = []
        for value in self.headers.get_list("link"):
            for part in value.split(","):
                url, _, params = part.strip().partition(";")
                if f'rel="{rel}"' in params.replace(" ", "") or f"rel={rel}" in params.replace(
                    " ", ""
                ):
                    out.append(urljoin(self.url, url.strip().strip("<>")))
        return out


#: The longest Retry-After believed: a larger one (or an overflowing number) is a day.
MAX_RETRY_AFTER = 86400.0


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The answer's Retry-After in seconds (0 to MAX_RETRY_AFTER), None without one."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit() and value.isascii():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return min(max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds()), MAX_RETRY_AFTER)


class _PossiblySent(CAUnreachableError):
    """The connection broke after the request may have reached the server."""


def problem_error(problem: AcmeProblem, retry_after: float | None, what: str) -> CertctlError:
    """The certctl error for an ACME problem document (one place decides)."""
    short = problem.short
    detail = problem.detail
    if problem.subproblems:
        detail = f"{detail} ({'; '.join(problem.subproblems)})"
    message = f"{what}: the ACME server answered {problem.status} {short or 'error'}"
    if detail:
        message = f"{message}: {detail[:300]}"
    hint = _HINTS.get(short)
    if problem.status == 501:  # step-ca 0.19 keyChange (with the type rejectedIdentifier)
        return UnsupportedCapabilityError(
            what, hint=f"the ACME server does not implement {what} (HTTP 501: {detail[:200]})"
        )
    if problem.status == 404 and what == "directory":
        return RejectedError(
            message,
            status=404,
            ca_message=detail,
            hint="directory_url names no ACME directory (for step-ca: "
            "https://HOST:PORT/acme/<ACME provisioner name>/directory)",
        )
    if short == "badNonce":  # reached only after the one retry with a fresh nonce
        return CAUnavailableError(
            message,
            status=problem.status,
            ca_message=detail,
            retry_after=retry_after or 1.0,
            hint="the CA refused two fresh nonces in a row: retry in a moment",
        )
    if short == "rateLimited" or problem.status == 429:
        return CAUnavailableError(
            message,
            status=problem.status,
            ca_message=detail,
            retry_after=retry_after or 60.0,
            hint=hint,
        )
    if problem.status >= 500 and short not in {"externalAccountRequired"}:
        return CAUnavailableError(
            message,
            status=problem.status,
            ca_message=detail,
            retry_after=retry_after or 5.0,
            hint=hint,
        )
    if short in {
        "externalAccountRequired",
        "accountDoesNotExist",
        "unauthorized",
    } and what.startswith("account"):
        return AuthenticationError(
            message, likely_cause=hint, status=problem.status, ca_message=detail, hint=hint
        )
    if short in {"rejectedIdentifier", "caa", "invalidProfile", "userActionRequired"}:
        return PolicyViolationError(message, status=problem.status, ca_message=detail, hint=hint)
    if short in {"unsupportedIdentifier", "badCSR", "badRevocationReason", "malformed"}:
        return InvalidRequestError(message, status=problem.status, ca_message=detail, hint=hint)
    return RejectedError(message, status=problem.status, ca_message=detail, hint=hint)


def _problem(answer: Answer) -> AcmeProblem:
    try:
        doc = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return AcmeProblem("", answer.body[:200].decode("utf-8", "replace"), answer.status)
    subs = []
    listed = doc.get("subproblems")
    for sub in listed if isinstance(listed, list) else ():
        if isinstance(sub, dict):
            ident = sub.get("identifier") or {}
            value = ident.get("value") if isinstance(ident, dict) else None
            subs.append(f"{value}: {sub.get('detail', '')}")
    return AcmeProblem(
        str(doc.get("type") or ""), str(doc.get("detail") or ""), answer.status, tuple(subs)
    )


class AcmeClient:
    """One ACME server: its directory, a nonce pool, and signed requests."""

    def __init__(
        self,
        directory_url: str,
        *,
        verify: ssl.SSLContext | bool,
        timeout: float,
        max_response_bytes: int,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 2,
    ) -> None:
        self.directory_url = directory_url
        self.max_retries = max_retries
        self._max = max_response_bytes
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=timeout,
            trust_env=False,
            transport=transport,
            headers={"user-agent": "certctl-acme/0.1"},
            limits=httpx.Limits(max_connections=16),
        )
        self._directory: dict[str, Any] | None = None
        self._directory_lock = asyncio.Lock()
        self._nonces: list[str] = []
        self.kid: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plain HTTP --------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One HTTP exchange; transport failures become TransientErrors.

        A cancelled caller waits for the exchange in flight to end (at most the timeout):
        cancelling httpx inside a TLS handshake leaks the socket.
        """
        task = asyncio.ensure_future(self._exchange(method, url, body, headers))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await task
            raise

    async def _exchange(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> Answer:
        try:
            async with (
                asyncio.timeout(self._timeout),  # the whole exchange, not each read
                self._http.stream(method, url, content=body, headers=headers) as response,
            ):
                data = bytearray()
                async for chunk in response.aiter_bytes():  # decoded: bounds a gzip bomb
                    data += chunk
                    if len(data) > self._max:
                        raise InvalidResponseError(
                            f"the ACME server's answer to {method} {url} exceeds {self._max} bytes",
                            hint="raise max_response_bytes if this CA sends large chains",
                        )
                status, resp_headers = response.status_code, response.headers
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise CATimeoutError(
                f"the ACME server did not answer {method} {url} in time ({type(exc).__name__})",
                retry_after=None,
                hint="raise timeout_seconds if the CA is slow",
            ) from None
        except (httpx.ConnectError, ssl.SSLError) as exc:
            raise CAUnreachableError(
                f"cannot reach the ACME server for {method} {url}: {type(exc).__name__}: {exc}",
                hint="check directory_url, that the CA runs, and tls_root_path",
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise _PossiblySent(
                f"cannot reach the ACME server for {method} {url}: {type(exc).__name__}: {exc}",
                hint="check directory_url, that the CA runs, and tls_root_path",
            ) from None
        except RuntimeError:  # httpx: "the client has been closed"
            raise IssuerClosedError(
                f"the connector was closed during {method} {url}",
                hint="the registry replaced or removed it; call through the registry",
            ) from None
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            # e.g. an invalid URL in the server's directory, a broken content encoding
            raise InvalidResponseError(f"{method} {url} failed: {type(exc).__name__}") from None
        answer = Answer(status, resp_headers, bytes(data), url)
        nonce = resp_headers.get("replay-nonce")
        if nonce and method != "HEAD":  # a HEAD to newNonce is for its caller alone
            self._nonces.append(nonce)
            del self._nonces[:-64]
        return answer

    def raise_for(self, answer: Answer, what: str) -> None:
        if answer.status < 400:
            return
        raise problem_error(_problem(answer), retry_after_seconds(answer.headers), what)

    # -- directory and nonces ------------------------------------------------------------

    async def directory(self) -> dict[str, Any]:
        if self._directory is not None:
            return self._directory
        async with self._directory_lock:
            if self._directory is None:
                answer = await self.request("GET", self.directory_url)
                self.raise_for(answer, "directory")
                value = answer.json()
                for needed in ("newNonce", "newAccount", "newOrder"):
                    if not isinstance(value.get(needed), str):
                        raise InvalidResponseError(
                            f"the ACME directory lacks {needed!r}: is directory_url an ACME "
                            "directory?",
                            hint="for step-ca: https://HOST:PORT/acme/<provisioner>/directory",
                        )
                self._directory = value
        return self._directory

    async def endpoint(self, name: str) -> str | None:
        value = (await self.directory()).get(name)
        return value if isinstance(value, str) else None

    async def _nonce(self) -> str:
        if self._nonces:
            return self._nonces.pop()
        url = await self.endpoint("newNonce")
        assert url is not None
        answer = await self.request("HEAD", url)
        self.raise_for(answer, "new nonce")
        nonce = answer.headers.get("replay-nonce")
        if not nonce:
            raise InvalidResponseError("the ACME server gave no Replay-Nonce")
        return str(nonce)

    # -- signed requests ---------------------------------------------------------------

    async def post(
        self,
        url: str,
        payload: Any,
        key: AccountKey,
        *,
        what: str,
        use_jwk: bool = False,
        accept: str | None = None,
        allow: frozenset[str] = frozenset(),
        idempotent: bool = True,
        server_retries: bool = True,
    ) -> Answer:
        """A JWS-signed POST (``payload`` None = POST-as-GET), one retry on badNonce.

        Problem types named in ``allow`` are returned instead of raised. A POST that is
        not ``idempotent`` (a new order, finalize, key change, revocation) is not sent
        again once the server may have seen it (a connection lost after sending); one
        without ``server_retries`` is not repeated after a 5xx either.
        """
        nonce_retried = connection_retried = False
        repeats = 0
        while True:
            nonce = await self._nonce()
            kid = None if use_jwk else self.kid
            body = json.dumps(key.jws(payload, url=url, nonce=nonce, kid=kid)).encode()
            headers = {"content-type": _JOSE}
            if accept:
                headers["accept"] = accept
            try:
                answer = await self.request("POST", url, body=body, headers=headers)
            except CAUnreachableError as exc:
                # A keep-alive connection the server closed while we sent: once more on
                # a new connection with a new nonce, unless the server may have acted on
                # it and acting twice differs from acting once.
                if connection_retried or (isinstance(exc, _PossiblySent) and not idempotent):
                    raise
                connection_retried = True
                log.debug("ACME %s: connection lost, retrying once", what)
                continue
            if answer.status < 400:
                return answer
            problem = _problem(answer)
            if problem.short == "badNonce" and not nonce_retried:
                nonce_retried = True
                log.debug("ACME %s: badNonce, retrying once with the fresh nonce", what)
                continue
            if problem.short in allow:
                return answer
            retry_after = retry_after_seconds(answer.headers)
            if (
                answer.status >= 500
                and answer.status != 501
                and server_retries
                and repeats < self.max_retries
                and (retry_after is None or retry_after <= 1.0)
            ):
                # step-ca answers 500 serverInternal when concurrent orders of one
                # account collide in its database: a moment later the same POST works.
                # A server asking for longer gets a CAUnavailableError carrying it.
                repeats += 1
                await asyncio.sleep(retry_after if retry_after is not None else 0.1 * 2**repeats)
                continue
            raise problem_error(problem, retry_after, what)

    @staticmethod
    def problem_of(answer: Answer) -> AcmeProblem:
        return _problem(answer)
