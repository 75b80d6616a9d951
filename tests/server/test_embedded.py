"""The app mounted in-process (as certctl-server would), with its lifespan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from certctl_core import ConnectorRegistrar, hookimpl
from certctl_core.errors import CertctlError
from certctl_core.host import PluginHost
from certctl_host.server import ServerSettings, create_app
from certctl_localca import plugin as localca_plugin
from tests.server.conftest import TOKEN

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class BrokenPlugin:
    @hookimpl
    def certctl_register_connectors(self, registrar: ConnectorRegistrar) -> None:
        raise RuntimeError("missing native library libfoo.so")


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings.from_mapping(
        {"data_dir": str(tmp_path / "data"), "api_tokens": [TOKEN]}, {}
    )


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://certctl.test", headers=AUTH
    )


async def test_plugins_reports_failures_when_mounted(tmp_path: Path) -> None:
    def plugins() -> PluginHost:
        return PluginHost.from_plugins({"localca": localca_plugin, "broken": BrokenPlugin()})

    app: Any = create_app(settings(tmp_path), plugins=plugins)
    async with app.router.lifespan_context(app), client(app) as http:
        body = (await http.get("/api/v1/plugins")).json()
    assert [t["name"] for t in body["connector_types"]] == ["localca"]
    (failure,) = body["failures"]
    assert failure["entry_point"] == "broken"
    assert "missing native library libfoo.so" in failure["reason"]


async def test_requests_before_lifespan_get_503(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path))
    async with client(app) as http:
        response = await http.get("/api/v1/issuers")  # the lifespan never ran
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"


async def _run_lifespan_startup(app: Any) -> list[dict[str, Any]]:
    """Drive the ASGI lifespan protocol as a host does; return what the app sent."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with pytest.raises(CertctlError):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


async def test_startup_certctl_error_is_logged_once_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from certctl_host.storage import KEY_ENV, ServerKey, SQLiteStore

    await (await SQLiteStore.open(tmp_path / "data", env={})).aclose()
    wrong = ServerKey.generate_text()
    errors: list[CertctlError] = []
    app = create_app(
        ServerSettings.from_mapping(
            {"data_dir": str(tmp_path / "data"), "api_tokens": [TOKEN]}, {KEY_ENV: wrong}
        ),
        startup_errors=errors,
    )
    sent = await _run_lifespan_startup(app)

    assert sent == [{"type": "lifespan.startup.failed", "message": ""}]
    (error,) = errors
    assert "server key" in str(error)
    records = [r for r in caplog.records if "cannot start" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert wrong not in caplog.text
    # The data directory lock was given back: a fixed start works.
    fixed: Any = create_app(settings(tmp_path))
    async with fixed.router.lifespan_context(fixed), client(fixed) as http:
        assert (await http.get("/api/v1/issuers")).status_code == 200
