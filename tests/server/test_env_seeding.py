"""Seeding an empty store from the environment: every connector type whose environment
describes an issuer gets it, one failing seed does not stop the others, and a store with
an issuer is never seeded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from certctl_core import ConnectorRegistrar, hookimpl
from certctl_core.host import PluginHost
from certctl_host.server._service import IssuerService
from certctl_host.storage import SQLiteStore
from tests.core.fakes import FakeWorld

pytestmark = pytest.mark.anyio


def seed_from(variable: str, issuer_id: str) -> Any:
    def seed(environ: Mapping[str, str]) -> tuple[str, Mapping[str, Any]] | None:
        if variable not in environ:
            return None
        return issuer_id, {"explode": environ[variable] == "explode"}

    return seed


class Plugin:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    @hookimpl
    def certctl_register_connectors(self, registrar: ConnectorRegistrar) -> None:
        for name, variable in (("alpha", "ALPHA_URL"), ("beta", "BETA_URL"), ("gamma", "G")):
            registrar.add(
                attrs.evolve(
                    self.world.connector_type(name), env_seed=seed_from(variable, f"iss-{name}")
                )
            )


async def test_every_type_the_environment_describes_is_seeded(tmp_path: Path) -> None:
    world = FakeWorld()
    host = PluginHost.from_plugins({"fakes": Plugin(world)})
    async with await SQLiteStore.open(tmp_path / "data", env={}) as store:
        service = IssuerService(store, host)
        try:
            env = {"ALPHA_URL": "x", "BETA_URL": "explode", "G": "x"}
            assert await service.seed_from_env(env) == ["iss-alpha", "iss-gamma"]
            assert sorted(r.issuer_id for r in await store.list_issuers()) == [
                "iss-alpha",
                "iss-gamma",
            ]
            # A store with issuers is never seeded again.
            assert await service.seed_from_env({"BETA_URL": "x"}) == []
        finally:
            await service.registry.aclose()
