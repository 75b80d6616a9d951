"""The ACME connector (RFC 8555): orders, challenges, finalize, revocation, ARI, profiles.

One connector drives one ACME directory with one account. ``issue`` places an order for
the CSR's DNS names and IP addresses (RFC 8738), solves every pending authorization with
the configured challenge (cleaning up whatever it set up, on failure and cancellation
too), finalizes with the caller's CSR, polls honouring Retry-After and downloads the
chain (an alternate chain when ``preferred_chain`` names its issuer).

ACME revokes by certificate, not by serial: the connector keeps every certificate it
issued (in memory) and revokes those by serial; a serial it did not issue is refused.
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
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl_acme._challenges import TOKEN, DnsHook, HttpResponder, TlsAlpnResponder, Undo, Webroot
from certctl_acme._client import AcmeClient, AcmeProblem, Answer, problem_error, retry_after_seconds
from certctl_acme._jose import AccountKey, b64url, eab_hmac_key_bytes, eab_jws, load_account_key
from certctl_acme.config import CONNECTOR_NAME, AcmeConfig, tls_context
from certctl_core import (
    Capabilities,
    CertctlError,
    CertificateRequest,
    ConfigError,
    ConfigProblem,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    InvalidResponseError,
    IssuedCertificate,
    IssuerBase,
    PolicyViolationError,
    RejectedError,
    RenewalWindow,
    Revocation,
    RevocationReason,
    TransientError,
    UnsupportedCapabilityError,
)
from certctl_core.domain import MAX_SERIAL, public_key_der

__all__ = ["AcmeIssuer", "build_acme_issuer", "cert_id"]

log = logging.getLogger(__name__)
_PEM_CHAIN = "application/pem-certificate-chain"
_MAX_CHALLENGE_RETRIES = 3
#: Authorization states that never change again (RFC 8555 section 7.1.6).
_FINAL_AUTHZ = frozenset({"deactivated", "expired", "revoked"})
#: An identifier value as the server echoes it (a DNS name, wildcard or IP address).
_IDENTIFIER = re.compile(r"[A-Za-z0-9.:*_-]{1,253}")
#: Certificates remembered per directory and account for revocation by serial (the oldest are
#: forgotten beyond this: about 1 KiB each).
MAX_REMEMBERED = 100_000
#: (directory URL, account key thumbprint) -> serial -> DER, shared by every connector
#: of the process, so that a rebuilt connector (a hot swap) with the same account still
#: revokes what the previous generation issued; another directory or account (whose
#: revocation the CA would refuse) never sees them. A key rollover moves them along.
_issued_by_account: dict[tuple[str, str], dict[int, bytes]] = {}


def cert_id(certificate: x509.Certificate) -> str:
    """The ARI certificate identifier (RFC 9773 section 4.1): AKI keyIdentifier '.' serial."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise InvalidRequestError(
            "the certificate has no Authority Key Identifier: ARI cannot name it"
        ) from None
    if aki.key_identifier is None:
        raise InvalidRequestError("the certificate's Authority Key Identifier has no keyIdentifier")
    serial = certificate.serial_number
    der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{b64url(aki.key_identifier)}.{b64url(der)}"


def _parse_time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidResponseError(f"the ACME server's {what} is not a timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidResponseError(f"the ACME server's {what} {value!r} is not RFC 3339") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _well_formed(what: str) -> Iterator[None]:
    """Last resort: a server answer of an unexpected shape that slipped past the checks
    (a number where a list belongs, a missing key) becomes an InvalidResponseError."""
    try:
        yield
    except (TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        log.debug("malformed ACME answer during %s", what, exc_info=True)
        raise InvalidResponseError(
            f"the ACME server's answer during {what} has an unexpected shape "
            f"({type(exc).__name__})",
            hint="the CA does not follow RFC 8555 here: report it to the CA's operator",
        ) from None


async def _all(tasks: list[Awaitable[None]]) -> None:
    """Run ``tasks`` together; the first failure cancels the others and is raised as is."""
    try:
        async with asyncio.TaskGroup() as group:
            for each in tasks:
                group.create_task(each)  # type: ignore[arg-type]
    except BaseExceptionGroup as failures:
        first: BaseException = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


class AcmeIssuer(IssuerBase):
    """See the module docstring."""

    connector_name = CONNECTOR_NAME

    def __init__(
        self,
        issuer_id: str,
        config: AcmeConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(issuer_id)
        self._config = config
        verify: ssl.SSLContext | bool = True
        if config.tls_root_path is not None:
            try:
                verify = tls_context(config.tls_root_path)
            except (ssl.SSLError, OSError, ValueError):  # replaced since validated
                raise ConfigError(
                    [
                        ConfigProblem(
                            "tls_root_path",
                            f"{config.tls_root_path} holds no PEM certificate TLS can use",
                            "point it at the PEM root of the ACME server's TLS certificate",
                        )
                    ]
                ) from None
        self._client = AcmeClient(
            config.directory_url,
            verify=verify,
            timeout=config.timeout_seconds,
            max_response_bytes=config.max_response_bytes,
            transport=transport,
            max_retries=config.max_retries,
        )
        self._key: AccountKey = config.account_key
        self._account_lock = asyncio.Lock()
        # A key rollover waits for the orders and revocations in flight (signed with the
        # old key) and holds new ones back until it is done.
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._rollover_lock = asyncio.Lock()
        self._rolled = asyncio.Event()
        self._rolled.set()
        self._issued = _issued_by_account.setdefault(
            (config.directory_url, self._key.thumbprint), {}
        )
        if config.challenge == "dns-01":
            self._dns: DnsHook | None = DnsHook(
                config.dns_hook,
                config.dns_propagation_seconds,
                config.poll_timeout_seconds,
                config.dns_hook_env,
            )
        else:
            self._dns = None

    def __repr__(self) -> str:
        return f"AcmeIssuer(issuer_id={self.issuer_id!r}, directory={self._config.directory_url!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(renewal_info=self._config.renewal_info)

    @property
    def account_key(self) -> AccountKey:
        """The account key in use (after a rollover, the new one)."""
        return self._key

    # -- account -------------------------------------------------------------------------

    async def account_url(self) -> str:
        """The account's URL (its ``kid``), creating the account on first use."""
        if self._client.kid is not None:
            return self._client.kid
        async with self._account_lock:
            if self._client.kid is None:
                self._client.kid = await self._new_account()
        return self._client.kid

    async def _new_account(self) -> str:
        directory = await self._client.directory()
        url = directory["newAccount"]
        payload: dict[str, Any] = {}
        if self._config.contact:
            payload["contact"] = list(self._config.contact)
        if self._config.terms_of_service_agreed:
            payload["termsOfServiceAgreed"] = True
        if self._config.eab_kid is not None and self._config.eab_hmac_key is not None:
            hmac_key = eab_hmac_key_bytes(self._config.eab_hmac_key.reveal())
            payload["externalAccountBinding"] = eab_jws(
                self._config.eab_kid, hmac_key, self._key.jwk, url
            )
        answer = await self._client.post(url, payload, self._key, what="account", use_jwk=True)
        kid = answer.location
        if not kid:
            raise InvalidResponseError("the ACME server created an account but gave no Location")
        status = answer.json().get("status")
        if status not in (None, "valid"):
            raise RejectedError(
                f"the ACME account is {status}",
                hint="a deactivated or revoked account cannot be used: use another account_key",
            )
        log.debug("ACME account %s ready", kid)
        return kid

    @contextlib.asynccontextmanager
    async def _signing(self) -> AsyncIterator[None]:
        """Held by every issue and revoke: a key rollover waits for none to be held."""
        while not self._rolled.is_set():
            await self._rolled.wait()
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def rollover_account_key(self, new_key_pem: str) -> AccountKey:
        """Replace the account key (RFC 8555 section 7.3.5); returns the new key.

        The host must store the new key as ``account_key`` afterwards: the old one no
        longer signs for the account.
        """
        self.ensure_open()
        try:
            new = load_account_key(new_key_pem)
        except ValueError as exc:
            raise InvalidRequestError(f"the new account key {exc}") from None
        async with self._rollover_lock:
            self._rolled.clear()
            try:
                await self._idle.wait()  # orders in flight finish with the old key
                return await self._rollover(new)
            finally:
                self._rolled.set()

    async def _rollover(self, new: AccountKey) -> AccountKey:
        kid = await self.account_url()
        url = await self._client.endpoint("keyChange")
        if url is None:
            raise UnsupportedCapabilityError("key rollover", hint="the directory has no keyChange")
        inner = new.jws({"account": kid, "oldKey": self._key.jwk}, url=url, nonce=None, kid=None)
        try:
            await self._client.post(
                url,
                inner,
                self._key,
                what="account key rollover",
                idempotent=False,
                server_retries=False,
            )
        except UnsupportedCapabilityError:
            raise
        except CertctlError:
            # The answer may be lost or wrong while the CA did switch keys: ask the CA
            # which key is the account's now, or the connector keeps a dead key.
            if not await self._key_owns(new, kid):
                raise
            log.warning("ACME key rollover answered with an error, yet the new key is current")
        directory = self._config.directory_url
        _issued_by_account.pop((directory, self._key.thumbprint), None)
        self._issued = _issued_by_account.setdefault((directory, new.thumbprint), self._issued)
        self._key = new
        return new

    async def _key_owns(self, key: AccountKey, kid: str) -> bool:
        """Whether ``key`` is the key of account ``kid`` (newAccount onlyReturnExisting)."""
        try:
            directory = await self._client.directory()
            answer = await self._client.post(
                directory["newAccount"],
                {"onlyReturnExisting": True},
                key,
                what="account lookup",
                use_jwk=True,
            )
        except CertctlError:
            return False
        return answer.location == kid

    # -- issue ---------------------------------------------------------------------------

    async def profiles(self) -> dict[str, str]:
        """The directory's profiles (``meta.profiles``): name -> description."""
        self.ensure_open()
        meta = (await self._client.directory()).get("meta") or {}
        listed = meta.get("profiles") if isinstance(meta, dict) else None
        if not isinstance(listed, dict):
            return {}
        return {str(k): str(v) for k, v in listed.items()}

    async def _profile_for(self, request: CertificateRequest) -> str | None:
        offered = await self.profiles()
        if request.profile.name in offered and request.profile.name != "default":
            return request.profile.name
        wanted = self._config.profile
        if wanted is None:
            return "default" if request.profile.name == "default" and "default" in offered else None
        if wanted not in offered:
            raise PolicyViolationError(
                f"profile {wanted!r} is not among the ACME server's profiles "
                f"{sorted(offered) or '(none offered)'}",
                hint="set profile to one of the directory's meta.profiles, or remove it",
            )
        return wanted

    @staticmethod
    def _identifiers(request: CertificateRequest) -> list[dict[str, str]]:
        sans = request.sans
        if sans.emails or sans.uris:
            raise InvalidRequestError(
                "ACME certifies DNS names and IP addresses only; the CSR also has "
                f"{len(sans.emails)} email and {len(sans.uris)} URI SANs",
                hint="remove the email and URI SANs, or use another issuer for them",
            )
        found: list[dict[str, str]] = []

        def add(kind: str, value: str) -> None:
            # One identifier once: A.example.test and a.example.test, 2001:DB8:0::1 and
            # 2001:db8::1 are one each (a CA refuses or double-validates duplicates).
            if {"type": kind, "value": value} not in found:
                found.append({"type": kind, "value": value})

        for name in sans.dns:
            add("dns", name.lower().rstrip("."))
        for ip in sans.ips:
            add("ip", str(ipaddress.ip_address(ip)))
        cn = request.common_name
        if cn:
            try:
                add("ip", str(ipaddress.ip_address(cn.strip())))
            except ValueError:
                add("dns", cn.strip().lower().rstrip("."))
        if not found:
            raise InvalidRequestError(
                "the CSR names no DNS name or IP address to certify",
                hint="put the names in the CSR's subjectAltName",
            )
        return found

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        async with self._signing():
            with _well_formed("issue"):
                return await self._issue(request)

    async def _issue(self, request: CertificateRequest) -> IssuedCertificate:
        identifiers = self._identifiers(request)
        kid = await self.account_url()
        directory = await self._client.directory()
        payload: dict[str, Any] = {"identifiers": identifiers}
        validity = request.validity if request.validity is not None else request.profile.max_ttl
        if validity is not None:
            payload["notAfter"] = _rfc3339(dt.datetime.now(dt.UTC) + validity)
        profile = await self._profile_for(request)
        if profile is not None:
            payload["profile"] = profile
        replaces = request.replaces
        if replaces is not None and directory.get("renewalInfo"):
            payload["replaces"] = cert_id(replaces)
        answer = await self._client.post(
            directory["newOrder"], payload, self._key, what="new order", idempotent=False
        )
        order_url = answer.location
        if not order_url:
            raise InvalidResponseError("the ACME server created an order but gave no Location")
        order = answer.json()
        # One deadline for the whole order: validation, finalize and issuance.
        deadline = asyncio.get_running_loop().time() + self._config.poll_timeout_seconds
        log.debug("ACME order %s for %d identifiers (account %s)", order_url, len(identifiers), kid)
        undos: list[Undo] = []
        try:
            authz = order.get("authorizations")
            if not isinstance(authz, list) or not all(isinstance(u, str) for u in authz):
                raise InvalidResponseError("the ACME order lists no authorizations")
            await _all([self._authorize(url, undos, deadline) for url in authz])
        finally:
            await self._undo(undos)
        issued = await self._finalize(order_url, order, request, deadline)
        # Kept first: whatever is wrong with it, the certificate exists and can be revoked.
        der = issued.certificate.public_bytes(serialization.Encoding.DER)
        self._issued[issued.serial] = der
        while len(self._issued) > MAX_REMEMBERED:
            del self._issued[next(iter(self._issued))]
        if self._config.state_dir is not None:
            await asyncio.to_thread(self._keep, issued.serial, der)
        if public_key_der(issued.certificate.public_key()) != request.public_key_der():
            raise InvalidResponseError(
                f"the ACME server certified another public key than the CSR's (serial "
                f"{issued.serial:#x}; revoke it)"
            )
        return issued

    async def _undo(self, undos: list[Undo]) -> None:
        for undo in reversed(undos):
            try:
                await undo()
            except (CertctlError, OSError) as exc:
                log.warning("ACME challenge clean-up failed: %s", exc)

    async def _get(self, url: str, what: str, accept: str | None = None) -> Answer:
        return await self._client.post(url, None, self._key, what=what, accept=accept)

    async def _sleep(self, answer: Answer, deadline: float) -> None:
        """Wait before the next poll: Retry-After if given, else the poll interval."""
        loop = asyncio.get_running_loop()
        wait = retry_after_seconds(answer.headers)
        wait = self._config.poll_interval_seconds if wait is None else min(max(wait, 0.0), 60.0)
        if loop.time() + wait > deadline:
            raise TransientError(
                f"the ACME server did not finish within {self._config.poll_timeout_seconds:g} s",
                retry_after=wait or 1.0,
                hint="raise poll_timeout_seconds if the CA validates slowly",
            )
        await asyncio.sleep(wait)

    async def _authorize(self, url: str, undos: list[Undo], deadline: float) -> None:
        answer = await self._get(url, "authorization")
        authz = answer.json()
        if authz.get("status") == "valid":
            return
        ident = authz.get("identifier")
        value = ident.get("value") if isinstance(ident, dict) else None
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise InvalidResponseError(
                f"the ACME authorization {url} names no valid identifier",
                hint="the CA does not follow RFC 8555 here: report it to the CA's operator",
            )
        if authz.get("status") != "pending":
            raise RejectedError(f"the authorization for {value} is {authz.get('status')!r}")
        kind = self._config.challenge
        challenge = self._challenge(authz, kind)
        if challenge is None:
            offered = sorted(str(c.get("type")) for c in authz["challenges"] if isinstance(c, dict))
            raise PolicyViolationError(
                f"the ACME server offers {offered} for {value}, not {kind}",
                hint="choose a challenge the CA offers for this identifier (wildcards need dns-01)",
            )
        token = challenge.get("token")
        chal_url = challenge.get("url")
        if not isinstance(token, str) or not isinstance(chal_url, str):
            raise InvalidResponseError(f"the {kind} challenge for {value} lacks token or url")
        if not TOKEN.fullmatch(token):
            # It becomes a file name (webroot), a URL path and a hashed key authorization:
            # "../x" would write outside the webroot.
            raise InvalidResponseError(
                f"the {kind} challenge for {value} has a token that is not 22-256 base64url "
                "characters (RFC 8555 section 8.1)",
                hint="the CA does not follow RFC 8555 here: report it to the CA's operator",
            )
        key_authorization = f"{token}.{self._key.thumbprint}"
        if kind == "dns-01":
            assert self._dns is not None
            undos.append(await self._dns.present(value, key_authorization))
        elif kind == "tls-alpn-01":
            alpn = TlsAlpnResponder.for_address(self._config.tls_host, self._config.tls_port)
            undos.append(await alpn.present(value, key_authorization))
        elif self._config.webroot is not None:
            undos.append(await Webroot(self._config.webroot).present(token, key_authorization))
        else:
            responder = HttpResponder.for_address(self._config.http_host, self._config.http_port)
            undos.append(await responder.present(token, key_authorization))
        await self._client.post(chal_url, {}, self._key, what=f"{kind} challenge for {value}")
        retries = 0
        while True:
            answer = await self._get(url, "authorization")
            authz = answer.json()
            status = authz.get("status")
            if status == "valid":
                return
            current = self._challenge(authz, kind) or {}
            error = current.get("error")
            if status == "invalid" or current.get("status") == "invalid":
                raise self._challenge_error(error, value, kind)
            if status in _FINAL_AUTHZ:  # nothing will change: do not wait for the timeout
                raise RejectedError(
                    f"the authorization for {value} became {status!r} during validation",
                    hint="place a new order (the CA ended this authorization)",
                )
            if isinstance(error, dict) and current.get("status") == "pending":
                # step-ca leaves a challenge it could not reach pending with an error:
                # ask again a few times, then report the error.
                retries += 1
                if retries > _MAX_CHALLENGE_RETRIES:
                    raise self._challenge_error(error, value, kind)
                await self._sleep(answer, deadline)
                await self._client.post(
                    chal_url, {}, self._key, what=f"{kind} challenge for {value}"
                )
                continue
            await self._sleep(answer, deadline)

    @staticmethod
    def _challenge(authz: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
        listed = authz.get("challenges")
        if not isinstance(listed, list):
            raise InvalidResponseError("the ACME authorization's challenges are not a list")
        for each in listed:
            if isinstance(each, dict) and each.get("type") == kind:
                return each
        return None

    @staticmethod
    def _challenge_error(error: Any, value: str, kind: str) -> CertctlError:
        if not isinstance(error, dict):
            return RejectedError(f"the {kind} challenge for {value} failed without a reason")
        problem = AcmeProblem(
            str(error.get("type") or ""),
            str(error.get("detail") or ""),
            int(error["status"]) if isinstance(error.get("status"), int) else 403,
        )
        return problem_error(problem, None, f"{kind} challenge for {value}")

    async def _finalize(
        self, order_url: str, order: dict[str, Any], request: CertificateRequest, deadline: float
    ) -> IssuedCertificate:
        finalize = order.get("finalize")
        if not isinstance(finalize, str):
            raise InvalidResponseError("the ACME order has no finalize URL")
        csr = b64url(request.csr.public_bytes(serialization.Encoding.DER))
        while True:
            answer = await self._client.post(
                finalize,
                {"csr": csr},
                self._key,
                what="finalize",
                allow=frozenset({"orderNotReady"}),
                idempotent=False,
            )
            if answer.status < 400:
                order = answer.json()
                break
            # orderNotReady: still validating, or over for good (invalid, expired).
            current = (await self._get(order_url, "order")).json()
            if current.get("status") not in ("pending", "ready", "processing"):
                order = current
                break
            await self._sleep(answer, deadline)
        while order.get("status") in ("processing", "ready", "pending"):
            await self._sleep(answer, deadline)
            answer = await self._get(order_url, "order")
            order = answer.json()
        status = order.get("status")
        if not isinstance(status, str) or (
            status == "valid" and not isinstance(order.get("certificate"), str)
        ):
            raise InvalidResponseError(
                "the ACME order has no status string, or is valid without a certificate URL"
            )
        if status != "valid":
            error = order.get("error")
            if isinstance(error, dict):
                raise self._challenge_error(error, "the order", "finalize")
            raise RejectedError(
                f"the ACME order ended {order.get('status')!r} without a certificate"
            )
        return await self._download(order["certificate"])

    async def _download(self, url: str) -> IssuedCertificate:
        answer = await self._get(url, "certificate", accept=_PEM_CHAIN)
        issued = IssuedCertificate.from_pem_chain(answer.body)
        wanted = self._config.preferred_chain
        if wanted is None or self._chain_matches(issued, wanted):
            return issued
        for alternate in answer.links("alternate"):
            try:
                other = IssuedCertificate.from_pem_chain(
                    (await self._get(alternate, "alternate chain", accept=_PEM_CHAIN)).body
                )
            except CertctlError as exc:
                # The certificate exists already: a broken alternate costs the choice of
                # chain, never the issuance.
                log.warning("ACME alternate chain %s unusable: %s", alternate, exc.message)
                continue
            if other.certificate != issued.certificate:
                log.warning("ACME alternate chain %s has another leaf: ignored", alternate)
                continue
            if self._chain_matches(other, wanted):
                return other
        log.info("no chain of the ACME server has issuer %r: using the default chain", wanted)
        return issued

    @staticmethod
    def _chain_matches(issued: IssuedCertificate, name: str) -> bool:
        top = issued.chain[-1]
        names = [
            attr.value for attr in top.issuer.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        ]
        return name in names

    # -- revoke, chain, check, ARI -----------------------------------------------------------

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        async with self._signing():
            with _well_formed("revoke"):
                return await self._revoke(serial, reason)

    async def _revoke(self, serial: int, reason: RevocationReason) -> Revocation:
        if not 0 < serial <= MAX_SERIAL:
            raise InvalidRequestError(f"serial {serial} is not a valid certificate serial number")
        der = self._issued.get(serial)
        if der is None and self._config.state_dir is not None:
            der = await asyncio.to_thread(self._kept, serial)
        if der is None:
            raise InvalidRequestError(
                f"this connector has not issued serial {serial:#x}: ACME revokes by the "
                "certificate itself, which certctl keeps (in memory) only for what this "
                "process issued through this directory",
                hint="revoke with an ACME client holding the certificate (certbot revoke "
                "--cert-path), or through the issuer that issued it",
            )
        await self.account_url()
        url = await self._client.endpoint("revokeCert")
        if url is None:
            raise InvalidResponseError("the ACME directory has no revokeCert")
        answer = await self._client.post(
            url,
            {"certificate": b64url(der), "reason": int(reason)},
            self._key,
            what="revocation",
            allow=frozenset({"alreadyRevoked"}),
            idempotent=False,
        )
        already = answer.status >= 400
        return Revocation(
            serial=serial,
            reason=reason,
            already_revoked=already,
            revoked_at=None if already else dt.datetime.now(dt.UTC),
        )

    def _kept_path(self, serial: int) -> Path:
        """``<state_dir>/<directory hash>/<serial hex>.der``: one state_dir may serve the
        issuers of several directories (serials are unique per CA only)."""
        assert self._config.state_dir is not None
        directory = hashlib.sha256(self._config.directory_url.encode()).hexdigest()[:16]
        return self._config.state_dir / directory / f"{serial:x}.der"

    def _keep(self, serial: int, der: bytes) -> None:
        """Write the certificate to ``state_dir`` atomically (for revocation later)."""
        path = self._kept_path(serial)
        tmp: str | None = None
        try:
            path.parent.mkdir(mode=0o755, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(der)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            # The certificate is issued: say what was lost, do not fail the issuance.
            log.warning("cannot keep certificate %#x in state_dir: %s", serial, exc.strerror)

    def _kept(self, serial: int) -> bytes | None:
        """The kept certificate of ``serial``: None when missing or not that certificate."""
        path = self._kept_path(serial)
        try:
            der = path.read_bytes()
            certificate = x509.load_der_x509_certificate(der)
        except (OSError, ValueError):
            return None
        if certificate.serial_number != serial:
            log.warning("%s holds another serial (%#x): ignored", path, certificate.serial_number)
            return None
        return der

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        path = self._config.ca_chain_path
        if path is None:
            raise InvalidRequestError(
                "ACME has no way to ask for the CA's chain and ca_chain_path is not set",
                hint="set ca_chain_path to a PEM file with the intermediates, then the root",
            )
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InvalidRequestError(f"cannot read ca_chain_path {path}: {exc}") from None
        return tuple(certs)

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        self.ensure_open()
        with _well_formed("renewal info"):
            return await self._renewal_info(certificate)

    async def _renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        if not self._config.renewal_info:
            raise self.unsupported("renewal_info")
        base = await self._client.endpoint("renewalInfo")
        if base is None:
            raise UnsupportedCapabilityError(
                "renewal_info",
                hint="this ACME server's directory has no renewalInfo (ARI): remove "
                "renewal_info: true from the issuer's config",
            )
        answer = await self._client.request("GET", f"{base.rstrip('/')}/{cert_id(certificate)}")
        self._client.raise_for(answer, "renewal info")
        body = answer.json()
        window = body.get("suggestedWindow")
        if not isinstance(window, dict):
            raise InvalidResponseError("the ACME renewal info has no suggestedWindow")
        start = _parse_time(window.get("start"), "renewal window start")
        end = _parse_time(window.get("end"), "renewal window end")
        if end < start:
            raise InvalidResponseError("the ACME renewal window ends before it starts")
        explanation = body.get("explanationURL")
        return RenewalWindow(
            start=start,
            end=end,
            explanation_url=explanation if isinstance(explanation, str) else None,
            retry_after=retry_after_seconds(answer.headers),
        )

    async def check(self) -> HealthReport:
        self.ensure_open()
        lines: list[HealthCheck] = []
        try:
            answer = await self._client.request("GET", self._config.directory_url)
            self._client.raise_for(answer, "directory")
            directory = answer.json()
            lines.append(HealthCheck("directory", True, f"{self._config.directory_url} answers"))
        except CertctlError as exc:
            lines.append(HealthCheck("directory", False, exc.message))
            return HealthReport(tuple(lines))
        meta = directory.get("meta") if isinstance(directory.get("meta"), dict) else {}
        assert isinstance(meta, dict)
        if meta.get("externalAccountRequired") and self._config.eab_kid is None:
            lines.append(
                HealthCheck(
                    "eab",
                    False,
                    "the CA requires External Account Binding; set eab_kid and eab_hmac_key",
                )
            )
        key_note = "ephemeral (generated at start: set account_key to keep the account)"
        lines.append(
            HealthCheck(
                "account_key",
                None,
                f"{self._key.alg}, thumbprint {self._key.thumbprint}"
                + (f"; {key_note}" if self._config.account_key_ephemeral else ""),
            )
        )
        offered = isinstance(directory.get("renewalInfo"), str)
        if self._config.renewal_info:
            detail = (
                "declared; the CA offers ARI"
                if offered
                else ("declared, but this CA's directory has no renewalInfo: remove renewal_info")
            )
            lines.append(HealthCheck("renewal_info", offered, detail))
        else:
            detail = (
                "not declared; the CA offers ARI: set renewal_info: true to use it"
                if offered
                else "not declared; not offered by this CA"
            )
            lines.append(HealthCheck("renewal_info", None, detail))
        profiles = meta.get("profiles")
        if self._config.profile is not None:
            names = sorted(profiles) if isinstance(profiles, dict) else []
            ok = self._config.profile in names
            detail = f"{self._config.profile!r} among the CA's profiles {names or '(none)'}"
            lines.append(HealthCheck("profile", ok, detail))
        return HealthReport(tuple(lines))

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()


async def build_acme_issuer(
    issuer_id: str,
    config: Mapping[str, Any],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AcmeIssuer:
    """The ``acme`` connector factory: validates ``config`` (ConfigError), no network."""
    return AcmeIssuer(
        issuer_id, AcmeConfig.from_mapping(config, issuer_id=issuer_id), transport=transport
    )
