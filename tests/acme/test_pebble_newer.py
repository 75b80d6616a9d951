"""ARI, ``replaces``, profiles and Retry-After against Debian unstable's Pebble 2.10.

Debian 12 ships Pebble 2.4, which has none of these; scripts/setup.sh fetches the newer
package once into the cache (``certctl_acme.testing.newer_pebble``). Challenges are
answered by Pebble itself (``PEBBLE_VA_ALWAYS_VALID``): validation is tested in
test_pebble.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from certctl_acme import plugin
from certctl_acme._jose import generate_account_key
from certctl_acme.testing import Pebble, newer_pebble
from certctl_core import PolicyViolationError, Profile, RejectedError, UnknownIssuerError
from certctl_core.host import PluginHost
from certctl_core.policy import CLOCK_TOLERANCE
from certctl_core.registry import Registry
from tests.acme.conftest import BuildIssuer, request_for
from tests.cli.conftest import certctl, clean_env

pytestmark = [pytest.mark.anyio, pytest.mark.acme]


@pytest.fixture(scope="module")
def newer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with Pebble.start(
        tmp_path_factory.mktemp("pebble-2.10"),
        binary=newer_pebble(),
        always_valid=True,
        profiles={"default": 86400, "shortlived": 3600},
    ) as running:
        yield running


def _config(pebble: Pebble, **extra: Any) -> dict[str, Any]:
    return {
        "directory_url": pebble.directory_url,
        "tls_root_path": str(pebble.tls_root),
        "terms_of_service_agreed": True,
        "http_address": "127.0.0.1:0",
        "poll_interval_seconds": 0.05,
        "renewal_info": True,
        **extra,
    }


async def test_renewal_window_of_a_fresh_and_of_a_revoked_certificate(
    newer: Pebble, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(_config(newer))
    assert "renewal_info" in issuer.capabilities.names()
    issued = await issuer.issue(request_for("ari.example.test"))
    window = await issuer.renewal_info(issued.certificate)
    assert issued.not_before - CLOCK_TOLERANCE <= window.start <= window.end
    assert window.end <= issued.not_after + CLOCK_TOLERANCE
    assert window.retry_after == 21600  # Pebble asks to come back in 6 hours
    await issuer.revoke(issued.serial)
    revoked = await issuer.renewal_info(issued.certificate)
    assert revoked.end <= dt.datetime.now(dt.UTC)  # renew now: the window is over


async def test_replaces_is_sent_and_a_second_replacement_is_refused(
    newer: Pebble, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(_config(newer))
    old = await issuer.issue(request_for("renew.example.test"))
    renewal = attrs.evolve(request_for("renew.example.test"), replaces=old.certificate)
    await issuer.issue(renewal)
    with pytest.raises(RejectedError, match="alreadyReplaced") as caught:
        await issuer.issue(renewal)
    assert caught.value.status == 409


async def test_profiles_listed_and_chosen_per_issuer_and_per_request(
    newer: Pebble, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(_config(newer))
    assert sorted(await issuer.profiles()) == ["default", "shortlived"]
    default = await issuer.issue(request_for("profile.example.test"))
    short = await issuer.issue(
        attrs.evolve(request_for("profile.example.test"), profile=Profile(name="shortlived"))
    )
    assert default.not_after - default.not_before > dt.timedelta(hours=23)
    assert short.not_after - short.not_before <= dt.timedelta(hours=1)
    per_issuer = await make_issuer(_config(newer, profile="shortlived"))
    issued = await per_issuer.issue(request_for("profile.example.test"))
    assert issued.not_after - issued.not_before <= dt.timedelta(hours=1)
    unknown = await make_issuer(_config(newer, profile="nope"))
    with pytest.raises(PolicyViolationError, match="not among"):
        await unknown.issue(request_for("profile.example.test"))
    assert not (await unknown.check()).ok


async def test_polling_honours_the_servers_retry_after(
    make_issuer: BuildIssuer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(seconds)

    monkeypatch.setattr("certctl_acme.connector.asyncio.sleep", record)
    with Pebble.start(
        tmp_path / "pebble",
        binary=newer_pebble(),
        always_valid=True,
        profiles={"default": 86400},
        retry_after={"authz": 2, "order": 2},
    ) as pebble:
        issuer = await make_issuer(_config(pebble))
        await issuer.issue(request_for("retry.example.test"))
    # Pebble sends Retry-After as an HTTP date 2 s ahead (whole seconds, so 1-2 s from
    # now) on pending authorizations and processing orders: the connector waits until
    # then, not its own 50 ms.
    assert slept and all(0.9 < seconds <= 2.0 for seconds in slept), slept


def test_certctl_renew_names_the_replaced_certificate(newer: Pebble, tmp_path: Path) -> None:
    """``certctl renew`` sends ``replaces``: a second renewal of one certificate is refused."""
    config = tmp_path / "acme.json"
    config.write_text(json.dumps(_config(newer, account_key=generate_account_key().pem())))
    base = ("--type", "acme", "--config", config)
    issued = certctl(
        "issue", *base, "--cn", "cli-ari.example.test", "--san", "cli-ari.example.test",
        "--key-out", tmp_path / "a.key", "--out", tmp_path / "a.pem", env=clean_env(),
    )  # fmt: skip
    assert issued.code == 0, issued
    renew = ("renew", *base, "--cert", tmp_path / "a.pem", "--key", tmp_path / "a.key")
    first = certctl(*renew, "--out", tmp_path / "b.pem", env=clean_env())
    assert first.code == 0, first
    second = certctl(*renew, "--out", tmp_path / "c.pem", env=clean_env())
    assert second.code != 0 and "alreadyReplaced" in second.stderr, second


async def test_registry_renewal_info_reaches_the_connector(newer: Pebble) -> None:
    registry = Registry(PluginHost.from_plugins({"acme": plugin}))
    async with registry:
        await registry.build("ari", "acme", _config(newer))
        issued = await registry.issue("ari", request_for("registry-ari.example.test"))
        window = await registry.renewal_info("ari", issued.certificate)
        assert window.start <= window.end
        with pytest.raises(UnknownIssuerError):
            await registry.renewal_info("nope", issued.certificate)
