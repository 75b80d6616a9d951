"""The app mounted in-process (as certctl-server would), with its lifespan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from certctl_core import hookimpl
from certctl_core.plugins import ConnectorRegistrar, PluginHost
from certctl_core.server import ServerSettings, create_app
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
