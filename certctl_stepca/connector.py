"""The step-ca issuer connector: ``/1.0/sign`` and ``/1.0/revoke`` with JWK-provisioner tokens.

One connector serves one issuer id with one provisioner key, decrypted once when the
connector is built. Rotation is a rebuild through the registry. Every request carries a
freshly minted one-time token, retries included; transient failures (no answer, 429,
5xx) are retried with capped, jittered exponential backoff; everything else is
translated into a precise certctl error. step-ca answers every authentication failure
with the same 401, so a 401 triggers a diagnosis that names the likely cause.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import operator
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from jwcrypto import jwk

from certctl_core import (
    AuthenticationError,
    Capabilities,
    CAUnavailableError,
    CertctlError,
    CertificateRequest,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    InvalidResponseError,
    IssuedCertificate,
    IssuerBase,
    PolicyViolationError,
    RejectedError,
    Revocation,
    RevocationReason,
    TransientError,
    UnsupportedCapabilityError,
)
from certctl_core.domain import SubjectAltNames
from certctl_stepca._crl import CRLCache
from certctl_stepca._http import (
    CAClient,
    CAResponse,
    as_response,
    fingerprint,
    load_root,
    parse_http_date,
    parse_retry_after,
)
from certctl_stepca._keyfile import ProvisionerKey, load_provisioner_key
from certctl_stepca._token import TokenSigner
from certctl_stepca.config import CONNECTOR_NAME, StepCAConfig
from certctl_stepca.config import claim_duration as _go_duration

__all__ = ["ProvisionerLimits", "StepCAIssuer", "build_stepca_issuer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_BACKOFF_BASE = 0.2
_BACKOFF_CAP = 5.0
_MAX_SKEW = dt.timedelta(seconds=60)
_LIMITS_TTL = 300.0


class ProvisionerLimits:
    """The provisioner's certificate duration claims, as ``/1.0/provisioners`` shows them."""

    def __init__(
        self,
        minimum: dt.timedelta | None,
        maximum: dt.timedelta | None,
        default: dt.timedelta | None,
    ) -> None:
        self.minimum, self.maximum, self.default = minimum, maximum, default

    def describe(self) -> str:
        def fmt(value: dt.timedelta | None) -> str:
            return str(value) if value is not None else "CA default"

        return f"min {fmt(self.minimum)}, default {fmt(self.default)}, max {fmt(self.maximum)}"


class StepCAIssuer(IssuerBase):
    """Issues and revokes certificates through one step-ca JWK provisioner."""

    connector_name = CONNECTOR_NAME

    def __init__(
        self,
        issuer_id: str,
        config: StepCAConfig,
        key: ProvisionerKey,
        client: CAClient,
    ) -> None:
        super().__init__(issuer_id)
        self._config = config
        self._key = key
        self._signer = TokenSigner(key)
        self._client = client
        # (intermediate, parent) links whose signature verified once: only the leaf's
        # signature is checked on every issuance (ADR 0016).
        self._verified_links: set[tuple[x509.Certificate, x509.Certificate]] = set()
        self._intermediates: tuple[x509.Certificate, ...] = ()
        self._limits: ProvisionerLimits | None = None
        self._limits_at = 0.0
        self._provisioner: dict[str, Any] | None = None
        self._crl = CRLCache(client, self.ca_chain, self._status_error)

    def __repr__(self) -> str:
        return (
            f"StepCAIssuer(issuer_id={self.issuer_id!r}, ca_url={self._config.ca_url!r}, "
            f"provisioner={self._config.provisioner_name!r}, kid={self._key.kid!r})"
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(crl=self._config.crl_enabled)

    @property
    def config(self) -> StepCAConfig:
        return self._config

    # -- requests ----------------------------------------------------------------------

    async def _with_retries(self, attempt: Callable[[int], Awaitable[T]]) -> T:
        """Run ``attempt(n)`` until it succeeds, retrying TransientError with backoff."""
        tries = self._config.max_retries + 1
        for number in range(tries):
            try:
                return await attempt(number)
            except TransientError as exc:
                if exc.retry_after is not None and exc.retry_after > _BACKOFF_CAP:
                    # The CA asked for a longer pause than we wait inline: retrying sooner
                    # would only spend tokens on refusals. The caller gets its Retry-After.
                    raise
                if number + 1 >= tries:
                    if exc.retry_after is None:
                        # Tell the caller when trying again is worth it: our next backoff step.
                        exc.retry_after = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**tries)
                    raise
                delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**number))  # noqa: S311
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, _BACKOFF_CAP))
                log.info(
                    "issuer %s: %s; retry %d/%d in %.2fs",
                    self.issuer_id,
                    exc.message,
                    number + 1,
                    tries - 1,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _status_error(self, response: CAResponse, action: str) -> CertctlError:
        """Translate a non-success answer (other than 401) into a certctl error."""
        status, message = response.status, response.ca_message()
        said = f": {message}" if message else ""
        if status in _TRANSIENT_STATUS:
            return CAUnavailableError(
                f"{action}: the CA answered {status}{said}",
                status=status,
                ca_message=message,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status == 403 and message and "duration" in message:
            return PolicyViolationError(
                f"{action}: the provisioner's duration limits refuse this request{said}",
                status=status,
                ca_message=message,
                hint="request a lifetime within the provisioner's min/max "
                "(certctl check shows them)",
            )
        if status == 400:
            return InvalidRequestError(
                f"{action}: the CA rejected the request as malformed{said}",
                status=status,
                ca_message=message,
            )
        return RejectedError(
            f"{action}: the CA refused ({status}){said}",
            status=status,
            ca_message=message,
        )

    # -- issue -------------------------------------------------------------------------

    def _token_subject(self, request: CertificateRequest) -> tuple[str, list[str]]:
        """``sub`` and ``sans`` for the token, as step-ca will compare them to the CSR's."""
        names = request.sans.as_strings()
        common_name = request.common_name
        if common_name:
            return common_name, names or [common_name]
        if not names:
            raise InvalidRequestError(
                "the CSR has neither a common name nor SANs; step-ca needs one",
            )
        return names[0], names

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        subject, sans = self._token_subject(request)
        validity = await self._validity_for(request)
        body: dict[str, Any] = {"csr": request.csr_pem}
        if validity is not None:
            body["notAfter"] = f"{int(validity.total_seconds())}s"

        def token() -> str:
            return self._signer.mint(
                issuer=self._config.provisioner_name,
                audience=self._config.audience("sign"),
                subject=subject,
                sans=sans,
                lifetime_seconds=self._config.token_lifetime_seconds,
            )

        def finish(response: CAResponse) -> tuple[CAResponse, IssuedCertificate | None]:
            # Runs inside the shielded exchange, right after the answer.
            if response.status not in (200, 201):
                return response, None
            issued = self._parse_chain(response)
            self._verify(request, issued, validity)
            return response, issued

        async def attempt(_number: int) -> tuple[CAResponse, IssuedCertificate | None]:
            outcome = await self._client.exchange(
                "POST", "/1.0/sign", body, token=token, then=finish
            )
            if outcome[0].status in _TRANSIENT_STATUS:
                raise self._status_error(outcome[0], "sign")
            return outcome

        response, issued = await self._authenticated(attempt, operator.itemgetter(0), "sign")
        if issued is None:
            raise self._status_error(response, "sign")
        return issued

    async def _validity_for(self, request: CertificateRequest) -> dt.timedelta | None:
        """The lifetime to request, checked locally against the provisioner's limits."""
        limits = await self._provisioner_limits()
        default = self._config.validity or (limits.default if limits else None)
        if default is None and request.validity is None and request.profile.max_ttl is None:
            return None  # the CA's own default; it knows it better than we do
        validity = request.effective_validity(default or dt.timedelta(days=3650))
        if limits is not None:
            reason = None
            if limits.maximum is not None and validity > limits.maximum:
                reason = f"more than the provisioner's maximum of {limits.maximum}"
            elif limits.minimum is not None and validity < limits.minimum:
                reason = f"less than the provisioner's minimum of {limits.minimum}"
            if reason:
                raise PolicyViolationError(
                    f"a lifetime of {validity} is {reason} "
                    f"(provisioner {self._config.provisioner_name!r}: {limits.describe()})",
                    hint="lower validity_days or the profile max TTL, or raise the "
                    "provisioner's claims in ca.json",
                )
        return validity

    def _parse_chain(self, response: CAResponse) -> IssuedCertificate:
        doc = response.json()
        pems = doc.get("certChain")
        if not isinstance(pems, list) or not pems:
            pems = [doc.get("crt"), doc.get("ca")]
        if not all(isinstance(p, str) for p in pems):
            raise InvalidResponseError("the CA's sign answer has no certificate chain")
        try:
            certs = [x509.load_pem_x509_certificate(p.encode()) for p in pems]
        except (ValueError, x509.InvalidVersion):
            raise InvalidResponseError(
                "the CA returned a certificate that does not parse"
            ) from None
        return IssuedCertificate.from_certificates(certs)

    def _verify(
        self,
        request: CertificateRequest,
        issued: IssuedCertificate,
        validity: dt.timedelta | None,
    ) -> None:
        """Check the chain links to the pinned root and the SANs are as requested (the
        registry compares the public key)."""
        root = self._client.root
        chain = list(issued.chain)
        if root is not None and chain[-1] != root:
            chain.append(root)
        try:
            for depth, (child, parent) in enumerate(itertools.pairwise(chain)):
                if depth and (child, parent) in self._verified_links:
                    continue
                child.verify_directly_issued_by(parent)
                if depth and len(self._verified_links) < 64:
                    self._verified_links.add((child, parent))
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise InvalidResponseError(
                "the certificate chain the CA returned does not verify to the pinned root",
                hint="the CA signs with another intermediate or root than configured",
            ) from exc
        wanted = request.sans
        if not len(wanted) and request.common_name:
            wanted = SubjectAltNames.of(issued.certificate)  # step-ca derives them from sub
        if not issued.sans.same_as(wanted):
            raise InvalidResponseError(
                f"the certificate's SANs {issued.sans.as_strings()} differ from the "
                f"CSR's {wanted.as_strings()}",
            )
        self._intermediates = tuple(c for c in issued.chain[1:] if c != root)

    # -- revoke ------------------------------------------------------------------------

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < 1 << 160:
            raise InvalidRequestError(f"{serial!r} is not a certificate serial number")
        reason = RevocationReason(reason)
        subject = str(serial)
        failed_before = False

        def token() -> str:
            return self._signer.mint(
                issuer=self._config.provisioner_name,
                audience=self._config.audience("revoke"),
                subject=subject,
                lifetime_seconds=self._config.token_lifetime_seconds,
            )

        body = {
            "serial": subject,
            "reasonCode": int(reason),
            "reason": reason.rfc_name,
            "passive": True,
        }

        async def attempt(_number: int) -> CAResponse:
            nonlocal failed_before
            try:
                response = await self._client.request("POST", "/1.0/revoke", body, token=token)
                if response.status in _TRANSIENT_STATUS:
                    raise self._status_error(response, "revoke")
            except TransientError:
                failed_before = True
                raise
            return response

        response = await self._authenticated(attempt, as_response, "revoke")
        now = dt.datetime.now(dt.UTC)
        if response.status == 200:
            return Revocation(serial, reason, already_revoked=False, revoked_at=now)
        message = (response.ca_message() or "").lower()
        if response.status == 400 and "already revoked" in message:
            # After a lost answer the first attempt may have done it: that is our revocation.
            return Revocation(serial, reason, already_revoked=not failed_before)
        raise self._status_error(response, "revoke")

    # -- CRL -----------------------------------------------------------------------------

    async def crl(self) -> bytes:
        """step-ca's CRL, verified against the chain; only with ``crl_enabled``."""
        self.ensure_open()
        if not self._config.crl_enabled:
            raise UnsupportedCapabilityError(
                "crl",
                hint="step-ca publishes CRLs only from v0.23 with authority.crl.enabled in "
                "ca.json (0.19/0.20 have none); once it does, set crl_enabled: true",
            )
        return await self._crl.get()

    # -- chain, provisioner, check ------------------------------------------------------

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        """The issuing intermediates, then the pinned root.

        step-ca has no endpoint for its intermediate; the one that signed our last
        certificate is used, or before any issuance the intermediate its TLS handshake
        presents (step-ca's server certificate comes from the same intermediate), verified
        against the pinned root (:meth:`CAClient.tls_intermediates`; empty, so the root
        alone, if it cannot be learnt that way).
        """
        self.ensure_open()
        intermediates = self._intermediates
        if not intermediates:
            response = await self._with_retries(lambda _n: self._client.request("GET", "/health"))
            if response.status != 200:
                raise self._status_error(response, "health")
            intermediates = await self._with_retries(lambda _n: self._client.tls_intermediates())
        root = self._client.root
        assert root is not None
        return (*intermediates, root)

    async def _fetch_provisioner(self) -> dict[str, Any] | None:
        """Our provisioner's entry from ``/1.0/provisioners`` (by name; kid checked later)."""
        cursor = ""
        for _page in range(100):
            path = "/1.0/provisioners?limit=100" + (f"&cursor={cursor}" if cursor else "")
            response = await self._client.request("GET", path)
            if response.status != 200:
                raise self._status_error(response, "list provisioners")
            doc = response.json()
            entries = doc.get("provisioners")
            if not isinstance(entries, list):
                raise InvalidResponseError("the CA's provisioner list is malformed")
            for entry in entries:
                if (
                    isinstance(entry, dict)
                    and entry.get("name") == self._config.provisioner_name
                    and entry.get("type") == "JWK"
                ):
                    return entry
            cursor = doc.get("nextCursor") or ""
            if not cursor:
                return None
        return None

    async def _provisioner_limits(self) -> ProvisionerLimits | None:
        """The provisioner's published duration claims, cached for a few minutes."""
        loop = asyncio.get_running_loop()
        if self._limits_at and loop.time() - self._limits_at < _LIMITS_TTL:
            return self._limits
        try:
            entry = await self._fetch_provisioner()
        except TransientError:
            return self._limits  # let the sign call itself report the outage
        self._provisioner = entry
        claims = entry.get("claims") if entry else None
        if isinstance(claims, dict):
            self._limits = ProvisionerLimits(
                _go_duration(claims.get("minTLSCertDuration")),
                _go_duration(claims.get("maxTLSCertDuration")),
                _go_duration(claims.get("defaultTLSCertDuration")),
            )
        else:
            self._limits = None  # authority-wide claims apply; the CA will judge
        self._limits_at = loop.time()
        return self._limits

    def _key_matches(self, entry: Mapping[str, Any]) -> bool:
        published = entry.get("key")
        if not isinstance(published, dict):
            return False
        try:
            return bool(jwk.JWK(**published).thumbprint() == self._key.public_thumbprint())
        except Exception:  # noqa: BLE001 - any malformed published key is "no match"
            return False

    async def _clock_skew(self) -> dt.timedelta | None:
        response = await self._client.request("GET", "/health")
        theirs = parse_http_date(response.headers.get("Date"))
        return None if theirs is None else theirs - dt.datetime.now(dt.UTC)

    async def _authenticated(
        self,
        attempt: Callable[[int], Awaitable[T]],
        response_of: Callable[[T], CAResponse],
        action: str,
    ) -> T:
        """Run ``attempt`` with retries; after a 401, once more with new tokens, then
        diagnose if it fails again.

        step-ca refuses tokens minted before its authority (re)started, and a SIGHUP
        reload restarts it: a request that raced a provisioner rotation gets a 401 that a
        fresh token cures. Anything else fails twice and is diagnosed.
        """
        outcome = await self._with_retries(attempt)
        if response_of(outcome).status == 401:
            outcome = await self._with_retries(attempt)
            if response_of(outcome).status == 401:
                raise await self._diagnose_401(response_of(outcome), action)
        return outcome

    async def _diagnose_401(self, response: CAResponse, action: str) -> AuthenticationError:
        """Find the likely cause of step-ca's generic 401 and say how to fix it."""
        cause, hint = (
            "the CA rejected the token for a reason it does not disclose",
            "read the step-ca log for the exact reason",
        )
        try:
            skew = await self._clock_skew()
            entry = await self._fetch_provisioner()
            if skew is not None and abs(skew) > _MAX_SKEW:
                cause = f"clock skew: the CA's clock differs from ours by {skew}"
                hint = "synchronise both clocks (NTP); step-ca allows one minute"
            elif entry is None:
                cause = (
                    f"provisioner {self._config.provisioner_name!r} is unknown to the CA "
                    "(or is not a JWK provisioner)"
                )
                hint = "check provisioner_name against 'step ca provisioner list'"
            elif entry.get("key", {}).get("kid") != self._key.kid:
                cause = (
                    f"the key's kid {self._key.kid!r} is not the one the CA has for "
                    f"provisioner {self._config.provisioner_name!r}"
                )
                hint = "the provisioner was rotated: configure its current key file"
            elif not self._key_matches(entry):
                cause = "the key file does not match the public key the CA publishes"
                hint = "configure the key file of this provisioner"
        except CertctlError as exc:
            cause = f"{cause}; diagnosis incomplete: {exc.message}"
        return AuthenticationError(
            f"{action}: step-ca refused our authentication (401): likely cause: {cause}",
            likely_cause=cause,
            status=401,
            ca_message=response.ca_message(),
            hint=hint,
        )

    async def check(self) -> HealthReport:
        """Reachability, pinned TLS, provisioner, key, clock and duration limits."""
        self.ensure_open()
        checks: list[HealthCheck] = []
        try:
            skew = await self._clock_skew()
        except CertctlError as exc:
            checks.append(HealthCheck("reachable", False, exc.message))
            return HealthReport(tuple(checks))
        checks.append(HealthCheck("reachable", True, f"{self._config.ca_url} answers"))
        root = self._client.root
        assert root is not None
        checks.append(HealthCheck("tls_pinned", True, f"root SHA-256 {fingerprint(root)}"))
        if skew is None:
            checks.append(HealthCheck("clock_skew", None, "the CA sent no Date header"))
        else:
            ok = abs(skew) <= _MAX_SKEW
            checks.append(
                HealthCheck("clock_skew", ok, f"{skew.total_seconds():+.1f}s (limit 60s)")
            )
        try:
            entry = await self._fetch_provisioner()
        except CertctlError as exc:
            checks.append(HealthCheck("provisioner", False, exc.message))
            return HealthReport(tuple(checks))
        name = self._config.provisioner_name
        if entry is None:
            checks.append(HealthCheck("provisioner", False, f"no JWK provisioner {name!r}"))
            return HealthReport(tuple(checks))
        checks.append(HealthCheck("provisioner", True, f"JWK provisioner {name!r} found"))
        kid_ok = entry.get("key", {}).get("kid") == self._key.kid
        key_ok = kid_ok and self._key_matches(entry)
        detail = f"kid {self._key.kid}" if key_ok else "the CA publishes another key"
        checks.append(HealthCheck("key_matches", key_ok, detail))
        self._limits_at = 0.0
        limits = await self._provisioner_limits()
        if limits is None:
            checks.append(HealthCheck("duration_limits", None, "authority defaults apply"))
        else:
            detail = limits.describe()
            validity = self._config.validity
            within = not (validity and limits.maximum and validity > limits.maximum)
            if not within:
                detail += f"; validity_days ({validity}) exceeds the maximum"
            checks.append(HealthCheck("duration_limits", within, detail))
        return HealthReport(tuple(checks))

    async def release(self) -> None:
        await self._client.aclose()


async def build_stepca_issuer(
    issuer_id: str,
    config: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> StepCAIssuer:
    """The factory: validate config, decrypt the key (off the event loop), pin the root.

    Raises ConfigError (every config problem at once, then key and root problems).
    Does not contact the CA (``check()`` does).
    """
    parsed = StepCAConfig.from_mapping(config, env=env, issuer_id=issuer_id)
    key = await asyncio.to_thread(
        load_provisioner_key, parsed.provisioner_key_path, parsed.provisioner_password
    )
    root = load_root(parsed)
    client = CAClient(parsed, root)
    return StepCAIssuer(issuer_id, parsed, key, client)
