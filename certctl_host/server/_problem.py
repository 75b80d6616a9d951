"""RFC 9457 problem documents, and the one place errors become HTTP statuses.

===================================  ======  =============================================
error                                status  problem type (``urn:certctl:problem:...``)
===================================  ======  =============================================
ConfigError                          422     ``invalid-config`` (``errors``: every field)
InvalidRequestError                  422     ``invalid-request``
PolicyViolationError                 422     ``policy-violation``
RejectedError                        422     ``rejected-by-ca`` (``ca_status``, ``ca_message``)
AuthenticationError                  502     ``ca-authentication`` (our credentials; not the
                                             client's fault)
InvalidResponseError                 502     ``invalid-ca-response``
UnknownIssuerError, NotFoundError    404     ``not-found``
UnsupportedCapabilityError           404     ``unsupported``
RevisionConflictError                409     ``conflict``
TransientError (and subclasses)      503     ``unavailable`` + ``Retry-After``
anything else                        500     ``internal`` (no detail; logged)
===================================  ======  =============================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from certctl_core.errors import (
    AuthenticationError,
    CertctlError,
    ConfigError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    PolicyViolationError,
    RejectedError,
    TransientError,
    UnsupportedCapabilityError,
)
from certctl_host.storage import RevisionConflictError

__all__ = ["PROBLEM_JSON", "Problem", "error_response", "problem_for", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE = "urn:certctl:problem:"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    500: "internal",
}


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUGS.get(status, "error")
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {
        "type": _TYPE + problem.slug,
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in problem.extra.items() if v is not None})
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def _where(exc: CertctlError) -> dict[str, Any]:
    return {"issuer_id": exc.issuer_id, "connector": exc.connector, "hint": exc.hint}


def problem_for(exc: CertctlError) -> Problem:
    """The problem document for a certctl error (messages never hold secrets)."""
    where = _where(exc)
    if isinstance(exc, ConfigError):
        errors = [{"field": p.field, "message": p.message, "hint": p.hint} for p in exc.problems]
        return Problem(422, exc.message, slug="invalid-config", errors=errors, **where)
    if isinstance(exc, TransientError):
        retry = max(1, math.ceil(exc.retry_after)) if exc.retry_after else 5
        return Problem(
            503,
            exc.message,
            slug="unavailable",
            headers={"Retry-After": str(retry)},
            retry_after=retry,
            **where,
        )
    if isinstance(exc, AuthenticationError):
        return Problem(
            502,
            f"the CA did not accept this server's credentials for the issuer: {exc.message}",
            slug="ca-authentication",
            ca_status=exc.status,
            likely_cause=exc.likely_cause,
            **where,
        )
    if isinstance(exc, RejectedError):
        return Problem(
            422,
            exc.message,
            slug="rejected-by-ca",
            ca_status=exc.status,
            ca_message=exc.ca_message,
            **where,
        )
    if isinstance(exc, InvalidResponseError):
        return Problem(502, exc.message, slug="invalid-ca-response", **where)
    if isinstance(exc, PolicyViolationError):
        return Problem(422, exc.message, slug="policy-violation", **where)
    if isinstance(exc, InvalidRequestError):
        return Problem(422, exc.message, slug="invalid-request", **where)
    if isinstance(exc, UnsupportedCapabilityError):
        return Problem(404, exc.message, slug="unsupported", **where)
    if isinstance(exc, NotFoundError):
        return Problem(404, exc.message, slug="not-found", **where)
    if isinstance(exc, RevisionConflictError):
        return Problem(409, exc.message, slug="conflict", **where)
    log.error("unexpected %s: %s", type(exc).__name__, exc)
    return Problem(500, "the server failed to handle this request", slug="internal")


async def error_response(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: every error becomes a problem document."""
    instance = request.url.path
    if isinstance(exc, Problem):
        return problem_response(exc, instance)
    if isinstance(exc, CertctlError):
        return problem_response(problem_for(exc), instance)
    if isinstance(exc, HTTPException):
        detail = {
            404: f"no resource at {instance}",
            405: f"{request.method} is not allowed on {instance}",
        }.get(exc.status_code, str(exc.detail))
        return problem_response(
            Problem(exc.status_code, detail, headers=exc.headers or None), instance
        )
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, instance, exc_info=exc)
    return problem_response(
        Problem(500, "the server failed to handle this request", slug="internal"), instance
    )
