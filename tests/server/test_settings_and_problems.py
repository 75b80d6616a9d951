"""Server settings parsing and the mapping of the error tree to problem documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from certctl_core import (
    AuthenticationError,
    CAUnavailableError,
    ConfigError,
    ConfigProblem,
    InvalidRequestError,
    InvalidResponseError,
    PolicyViolationError,
    RejectedError,
    UnknownIssuerError,
    UnsupportedCapabilityError,
)
from certctl_core.errors import CertctlError
from certctl_host.server import ServerSettings
from certctl_host.server._problem import problem_for
from certctl_host.storage import RevisionConflictError

TOKEN_A = "token-a-0123456789abcdef"
TOKEN_B = "token-b-0123456789abcdef"


def test_settings_take_tokens_from_env_and_defaults() -> None:
    settings = ServerSettings.from_mapping(
        {"data_dir": "/tmp/x"},
        {"CERTCTL_API_TOKENS": f" {TOKEN_A} ,{TOKEN_B},", "CERTCTL_PORT": "9000"},
    )
    assert [t.reveal() for t in settings.api_tokens] == [TOKEN_A, TOKEN_B]
    assert settings.port == 9000
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == Path("/tmp/x")
    assert TOKEN_A not in repr(settings)


def test_explicit_settings_win_over_env() -> None:
    settings = ServerSettings.from_mapping(
        {"api_tokens": [TOKEN_A], "port": 1234, "data_dir": "/a"},
        {"CERTCTL_API_TOKENS": TOKEN_B, "CERTCTL_PORT": "9000", "CERTCTL_DATA_DIR": "/b"},
    )
    assert [t.reveal() for t in settings.api_tokens] == [TOKEN_A]
    assert (settings.port, settings.data_dir) == (1234, Path("/a"))


def test_settings_report_every_problem_without_echoing_tokens() -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_mapping(
            {
                "api_tokens": [TOKEN_A, "short-secret"],
                "port": 70000,
                "rate_limit_per_second": 0,
                "max_body_bytes": 1.5,
                "log_level": "loud",
                "colour": "blue",
            },
            {},
        )
    fields = {p.field for p in info.value.problems}
    assert fields == {
        "api_tokens[1]",
        "port",
        "rate_limit_per_second",
        "max_body_bytes",
        "log_level",
        "colour",
    }
    assert "short-secret" not in str(info.value)


def test_unknown_key_and_bad_value_are_reported_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_mapping({"api_tokens": [TOKEN_A], "prot": 80, "port": "http"}, {})
    problems = {p.field: p for p in info.value.problems}
    assert set(problems) == {"prot", "port"}
    assert problems["prot"].hint == "did you mean 'port'?"


def test_settings_refuse_to_run_without_tokens() -> None:
    with pytest.raises(ConfigError, match="CERTCTL_API_TOKENS"):
        ServerSettings.from_mapping({}, {})


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (ConfigError([ConfigProblem("a", "bad")]), 422, "invalid-config"),
        (InvalidRequestError("bad csr"), 422, "invalid-request"),
        (PolicyViolationError("too long"), 422, "policy-violation"),
        (RejectedError("no", status=403, ca_message="SAN mismatch"), 422, "rejected-by-ca"),
        (AuthenticationError("401", status=401), 502, "ca-authentication"),
        (InvalidResponseError("garbage"), 502, "invalid-ca-response"),
        (UnknownIssuerError("who"), 404, "not-found"),
        (UnsupportedCapabilityError("crl"), 404, "unsupported"),
        (RevisionConflictError("x", 1, 2), 409, "conflict"),
        (CAUnavailableError("busy", status=503, retry_after=2.5), 503, "unavailable"),
        (CertctlError("odd"), 500, "internal"),
    ],
)
def test_errors_map_to_problem_statuses(error: CertctlError, status: int, slug: str) -> None:
    problem = problem_for(error)
    assert (problem.status, problem.slug) == (status, slug)
    if status == 503:
        assert problem.headers == {"Retry-After": "3"}
    if status == 500:
        assert problem.detail == "the server failed to handle this request"


def test_ocsp_request_limit_cannot_exceed_what_the_parser_accepts() -> None:
    from certctl_core.revocation import MAX_OCSP_REQUEST_BYTES

    top = ServerSettings.from_mapping(
        {"api_tokens": [TOKEN_A], "max_ocsp_request_bytes": MAX_OCSP_REQUEST_BYTES}, {}
    )
    assert top.max_ocsp_request_bytes == MAX_OCSP_REQUEST_BYTES
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_mapping(
            {"api_tokens": [TOKEN_A], "max_ocsp_request_bytes": MAX_OCSP_REQUEST_BYTES + 1}, {}
        )
    (problem,) = info.value.problems
    assert problem.field == "max_ocsp_request_bytes"
    assert f"to {MAX_OCSP_REQUEST_BYTES}" in problem.message
