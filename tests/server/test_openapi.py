"""The OpenAPI document: it agrees with the app's routes, and schemathesis, generating
requests from it against the real server, finds no 5xx and no response off the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from starlette.routing import Route

from certctl_host.server import ServerSettings, create_app, load_openapi
from tests.server.conftest import TOKEN, Server, localca_body


def test_document_and_routes_agree() -> None:
    app = create_app(ServerSettings.from_mapping({"api_tokens": [TOKEN]}, {}))
    routes = {
        (route.path.replace("{request:ocsp_get}", "{request}"), method.lower())
        for route in app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    document = load_openapi()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented
    assert document["openapi"].startswith("3.1")


def test_served_document_is_the_packaged_one(server: Server) -> None:
    response = httpx.get(f"{server.url}/openapi.json", trust_env=False)
    assert response.status_code == 200
    assert response.json() == load_openapi()
    repository_copy = Path(__file__).parents[2] / "certctl_host" / "server" / "openapi.json"
    assert response.json() == __import__("json").loads(repository_copy.read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("schemathesis")
    running = Server(
        directory, log_level="warning", rate_limit_per_second=1e5, rate_limit_burst=10**6
    )
    running.start()
    assert running.put("ca1", localca_body(directory / "state")).status_code == 201
    yield running
    running.stop()
    assert "Traceback" not in running.log_text()


# DER bodies are bytes: send them as schemathesis sends application/octet-stream.
schemathesis.serializer.alias("application/ocsp-request", "application/octet-stream")
SCHEMA = schemathesis.openapi.from_dict(load_openapi())
OPERATIONS = [cast(Any, result).ok() for result in SCHEMA.get_all_operations()]
POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE
#: Operations with a body to break: the others take any string in the path, so nothing
#: in the document can be made invalid for them.
CASES = [(op, POSITIVE) for op in OPERATIONS] + [
    (op, NEGATIVE) for op in OPERATIONS if op.method.upper() in ("PUT", "POST")
]
#: A schema-valid request may still be refused with 422: the document cannot express
#: which CSRs parse, which connector types are installed or what each config needs.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]
#: RFC 6960 §2.3: a malformed OCSP request is answered in band, HTTP 200 with the
#: malformedRequest status, which the tests of the PKI endpoints check.
IN_BAND = [schemathesis.checks.negative_data_rejection]


@pytest.mark.parametrize(
    ("operation", "mode"), CASES, ids=[f"{op.label}-{mode.value}" for op, mode in CASES]
)
def test_no_server_error_when_requests_come_from_the_document(
    live: Server, operation: Any, mode: Any
) -> None:
    # schemathesis' own pytest plugin does not run on this pytest; hypothesis drives the
    # strategy it builds from the document instead (a CI-sized run: 25 cases each).
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=live.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            excluded_checks=EXCLUDED + (IN_BAND if "/ocsp/" in operation.path else []),
        )

    run()
