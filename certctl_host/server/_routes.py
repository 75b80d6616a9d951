"""HTTP endpoints: the authenticated issuer and profile API and the unauthenticated PKI
endpoints."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import json
import logging
import time
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from certctl_core.domain import (
    CertificateRequest,
    Profile,
    RevocationReason,
    format_serial_hex,
    parse_serial,
)
from certctl_core.errors import (
    CertctlError,
    InvalidRequestError,
    UnknownIssuerError,
    UnsupportedCapabilityError,
)
from certctl_host.server._guard import (
    BearerAuth,
    RateLimiter,
    read_body,
    read_json,
    require_media_type,
)
from certctl_host.server._ocsp_fast import (
    OCSP_REQUEST,
    OCSP_RESPONSE,
    answer_get,
    answer_post,
    etags,
)
from certctl_host.server._problem import Problem, problem_for
from certctl_host.server._profiles import UnknownProfileError
from certctl_host.server._service import IssuerService
from certctl_host.server._settings import ServerSettings
from certctl_host.storage import ProfileRecord

__all__ = ["OPENAPI_JSON", "Endpoints", "load_openapi"]

log = logging.getLogger(__name__)


class _AnythingConvertor(Convertor[str]):
    """Like Starlette's ``path``, but a decoded newline (``%0A``) matches too: a mangled
    GET request is answered malformedRequest in band, not with a 404."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ocsp_get", _AnythingConvertor())

PKIX_CRL = "application/pkix-crl"
OPENAPI_JSON = "openapi.json"
_MAX_VALIDITY = dt.timedelta(days=3650)


def load_openapi() -> dict[str, Any]:
    """The OpenAPI document shipped with the package."""
    text = importlib.resources.files(__package__).joinpath(OPENAPI_JSON).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _profile(raw: Any) -> Profile:
    if raw is None:
        return Profile()
    if isinstance(raw, str):
        return Profile(raw) if raw else Profile()
    if isinstance(raw, dict):
        return Profile.from_mapping(raw)
    raise InvalidRequestError("profile must be a name or an object with name and max_ttl_seconds")


def _validity(raw: Any) -> dt.timedelta | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
        raise InvalidRequestError("validity_seconds must be a positive number")
    if raw > _MAX_VALIDITY.total_seconds():
        raise InvalidRequestError(f"validity_seconds must be at most {_MAX_VALIDITY.days} days")
    return dt.timedelta(seconds=raw)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _profile_json(record: ProfileRecord) -> dict[str, Any]:
    return {
        **record.doc,
        "name": record.name,
        "revision": record.revision,
        "updated_at": _iso(record.updated_at),
    }


class Endpoints:
    """The route handlers, bound to one service and its guards."""

    def __init__(self, settings: ServerSettings, get_service: Any) -> None:
        self.settings = settings
        self._service = get_service
        self.auth = BearerAuth(settings.api_tokens)
        self.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._openapi = load_openapi()
        #: issuer -> (CRL DER, ETag, Last-Modified, nextUpdate) of the CRL last served
        self._crl_known: dict[str, tuple[bytes, str, str | None, dt.datetime | None]] = {}

    @property
    def service(self) -> IssuerService:
        service: IssuerService = self._service()
        return service

    def routes(self) -> list[Route]:
        return [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/healthz", self.health, methods=["GET"]),
            Route("/api/v1/plugins", self.plugins, methods=["GET"]),
            Route("/api/v1/issuers", self.list_issuers, methods=["GET"]),
            Route("/api/v1/issuers/{issuer_id}", self.get_issuer, methods=["GET"]),
            Route("/api/v1/issuers/{issuer_id}", self.put_issuer, methods=["PUT"]),
            Route("/api/v1/issuers/{issuer_id}/rebuild", self.rebuild_issuer, methods=["POST"]),
            Route("/api/v1/issuers/{issuer_id}/certificates", self.issue, methods=["POST"]),
            Route("/api/v1/issuers/{issuer_id}/revocations", self.revoke, methods=["POST"]),
            Route("/api/v1/profiles", self.list_profiles, methods=["GET"]),
            Route("/api/v1/profiles/{name}", self.get_profile, methods=["GET"]),
            Route("/api/v1/profiles/{name}", self.put_profile, methods=["PUT"]),
            Route("/api/v1/profiles/{name}", self.delete_profile, methods=["DELETE"]),
            Route("/.well-known/pki/crl/{issuer_id}", self.crl, methods=["GET"]),
            Route("/.well-known/pki/ocsp/{issuer_id}", self.ocsp_post, methods=["POST"]),
            Route(
                "/.well-known/pki/ocsp/{issuer_id}/{request:ocsp_get}",
                self.ocsp_get,
                methods=["GET"],
            ),
        ]

    # -- open --------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # -- issuer API --------------------------------------------------------------------

    async def plugins(self, request: Request) -> Response:
        self.auth.check(request)
        host = self.service.plugins
        types = []
        for name, connector_type in sorted(self.service.registry.types.items()):
            plugin = host.plugin_of(name)
            types.append(
                {
                    "name": name,
                    "version": connector_type.version,
                    "description": connector_type.description,
                    "capabilities": list(connector_type.capabilities.names()),
                    "secret_fields": sorted(connector_type.secret_fields),
                    "plugin": plugin,
                    "distribution": host.distributions.get(plugin) if plugin else None,
                }
            )
        failures = [
            {"entry_point": f.entry_point, "distribution": f.distribution, "reason": f.reason}
            for f in host.failures
        ]
        return JSONResponse(
            {"connector_types": types, "failures": failures, "blocked": list(host.blocked)}
        )

    async def list_issuers(self, request: Request) -> Response:
        self.auth.check(request)
        views = await self.service.list()
        return JSONResponse({"issuers": [v.as_json() for v in views]})

    async def get_issuer(self, request: Request) -> Response:
        self.auth.check(request)
        view = await self.service.get(request.path_params["issuer_id"])
        return JSONResponse(view.as_json())

    async def put_issuer(self, request: Request) -> Response:
        self.auth.check(request)
        body = await read_json(request, self.settings.max_body_bytes)
        view, created = await self.service.put(request.path_params["issuer_id"], body)
        return JSONResponse(view.as_json(), status_code=201 if created else 200)

    async def rebuild_issuer(self, request: Request) -> Response:
        """Rebuild from the stored config, re-reading the files it names (rotation)."""
        self.auth.check(request)
        view = await self.service.rebuild(request.path_params["issuer_id"])
        return JSONResponse(view.as_json())

    async def issue(self, request: Request) -> Response:
        self.auth.check(request)
        issuer_id = request.path_params["issuer_id"]
        body = await read_json(request, self.settings.max_body_bytes)
        csr = body.get("csr")
        if not isinstance(csr, str) or not csr.strip():
            raise InvalidRequestError("csr is required: a PEM certificate signing request")
        certificate_request = CertificateRequest.from_pem(
            csr,
            profile=_profile(body.get("profile")),
            validity=_validity(body.get("validity_seconds")),
        )
        try:
            issued = await self.service.issue(issuer_id, certificate_request)
        except UnknownProfileError as exc:
            raise Problem(
                422,
                exc.message,
                slug="unknown-profile",
                issuer_id=issuer_id,
                hint=exc.hint,
                profile=exc.profile,
                known_profiles=list(exc.known),
            ) from None
        return JSONResponse(
            {
                "issuer_id": issuer_id,
                "serial": issued.serial_hex,
                "serial_decimal": issued.serial_decimal,
                "not_before": issued.not_before.isoformat(),
                "not_after": issued.not_after.isoformat(),
                "certificate": issued.pem,
                "chain": issued.chain_pem,
            },
            status_code=201,
        )

    async def revoke(self, request: Request) -> Response:
        self.auth.check(request)
        issuer_id = request.path_params["issuer_id"]
        body = await read_json(request, self.settings.max_body_bytes)
        if "serial" not in body:
            raise InvalidRequestError("serial is required: hex as 0x1f2e... or decimal digits")
        serial = parse_serial(body["serial"])
        reason = RevocationReason.parse(body.get("reason", 0))
        revocation, revoked_at = await self.service.revoke(issuer_id, serial, reason)
        return JSONResponse(
            {
                "issuer_id": issuer_id,
                "serial": format_serial_hex(serial),
                "reason": revocation.reason.rfc_name,
                "reason_code": int(revocation.reason),
                "revoked_at": revoked_at.isoformat(),
                "already_revoked": revocation.already_revoked,
            },
            status_code=200 if revocation.already_revoked else 201,
        )

    # -- profiles ----------------------------------------------------------------------

    async def list_profiles(self, request: Request) -> Response:
        self.auth.check(request)
        records = await self.service.profiles()
        return JSONResponse({"profiles": [_profile_json(r) for r in records]})

    async def get_profile(self, request: Request) -> Response:
        self.auth.check(request)
        record = await self.service.profile(request.path_params["name"])
        return JSONResponse(_profile_json(record))

    async def put_profile(self, request: Request) -> Response:
        self.auth.check(request)
        body = await read_json(request, self.settings.max_body_bytes)
        record, created = await self.service.put_profile(request.path_params["name"], body)
        return JSONResponse(_profile_json(record), status_code=201 if created else 200)

    async def delete_profile(self, request: Request) -> Response:
        self.auth.check(request)
        await self.service.delete_profile(request.path_params["name"])
        return Response(status_code=204)

    # -- PKI: CRL ----------------------------------------------------------------------

    async def crl(self, request: Request) -> Response:
        self.limiter.check(request)
        issuer_id = request.path_params["issuer_id"]
        try:
            der = await self.service.crl(issuer_id)
        except UnsupportedCapabilityError as exc:
            raise Problem(
                404,
                f"issuer {issuer_id!r} publishes no CRL: {exc.hint or exc.message}",
                slug="crl-unavailable",
                issuer_id=issuer_id,
                connector=exc.connector,
                hint=exc.hint or "this connector has no CRL; check revocation with OCSP",
            ) from None
        except UnknownIssuerError:
            raise
        except CertctlError as exc:
            # Unauthenticated: the reason (a config error may name files, a CA address)
            # stays in the authenticated API; here only the status and a generic detail.
            log.info("issuer %s: CRL unavailable: %s", issuer_id, exc)
            problem = problem_for(exc)
            raise Problem(
                problem.status,
                f"the CRL of issuer {issuer_id!r} is unavailable right now",
                slug=problem.slug,
                headers=problem.headers,
                retry_after=problem.extra.get("retry_after"),
                issuer_id=issuer_id,
                hint="try again later; the issuer's status is in the authenticated API",
            ) from None
        etag, headers = self._crl_facts(issuer_id, der)
        wanted = etags(request.headers.get("if-none-match"))
        if etag in wanted or "*" in wanted:  # RFC 9110 §13.1.2: "*" matches any current
            return Response(status_code=304, headers=headers)
        return Response(der, media_type=PKIX_CRL, headers=headers)

    def _crl_facts(self, issuer_id: str, der: bytes) -> tuple[str, dict[str, str]]:
        """ETag and caching headers of the issuer's current CRL, worked out once per CRL
        (hashing and parsing a 100,000-entry CRL takes tens of milliseconds)."""
        known = self._crl_known.get(issuer_id)
        if known is None or not (known[0] is der or known[0] == der):
            etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'
            known = (der, etag, *self._crl_times(der))
            self._crl_known[issuer_id] = known
        _, etag, last_modified, next_update = known
        headers = {"ETag": etag}
        if last_modified is not None:
            headers["Last-Modified"] = last_modified
        if next_update is None:
            headers["Cache-Control"] = "no-cache"
            return etag, headers
        left = int(next_update.timestamp() - time.time())
        max_age = max(0, min(left, self.settings.crl_max_age_seconds))
        headers["Cache-Control"] = f"public, max-age={max_age}, no-transform, must-revalidate"
        headers["Expires"] = next_update.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return etag, headers

    @staticmethod
    def _crl_times(der: bytes) -> tuple[str | None, dt.datetime | None]:
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError:
            return None, None
        return crl.last_update_utc.strftime("%a, %d %b %Y %H:%M:%S GMT"), crl.next_update_utc

    # -- PKI: OCSP ---------------------------------------------------------------------
    # Well-formed requests are answered by the lean path in front of the framework
    # (_ocsp_fast.OCSPFastPath); these routes answer the same way through the same
    # functions, and say 413/415/429 with problem documents.

    @staticmethod
    def _ocsp_reply(reply: tuple[int, bytes, dict[str, str]]) -> Response:
        status, body, headers = reply
        if status == 304:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=OCSP_RESPONSE, headers=headers)

    async def ocsp_post(self, request: Request) -> Response:
        self.limiter.check(request)
        require_media_type(request, OCSP_REQUEST)
        body = await read_body(request, self.settings.max_ocsp_request_bytes)
        reply = await answer_post(self.service, request.path_params["issuer_id"], body)
        return self._ocsp_reply(reply)

    async def ocsp_get(self, request: Request) -> Response:
        """``GET .../ocsp/{issuer_id}/{serial-hex}`` or the RFC 6960 Appendix A GET form
        ``GET .../ocsp/{issuer_id}/{url-encoded base64 DER request}``.

        Like POST, every answer to a request that reached the responder is an OCSP
        response (HTTP 200): a path that is neither form gets ``malformedRequest``.
        Only a path longer than the size limit is refused with 413.
        """
        self.limiter.check(request)
        issuer_id = request.path_params["issuer_id"]
        text = unquote(request.path_params["request"])
        limit = self.settings.max_ocsp_request_bytes
        if len(text) > limit * 4 // 3 + 4:
            raise Problem(413, f"the OCSP request is larger than {limit} bytes", limit=limit)
        reply = await answer_get(
            self.service, issuer_id, text, request.headers.get("if-none-match")
        )
        return self._ocsp_reply(reply)
