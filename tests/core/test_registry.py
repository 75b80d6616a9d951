"""The registry: building, hot-swapping, draining and closing issuers; profile policy."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from certctl_contracts.checks import stray_certificate
from certctl_core import (
    Capabilities,
    CertctlError,
    CertificateRequest,
    ConfigError,
    ConfigProblem,
    ConnectorType,
    InvalidRequestError,
    InvalidResponseError,
    IssuedCertificate,
    IssuerPort,
    PolicyViolationError,
    Profile,
    RejectedError,
    RevocationReason,
    UnknownConnectorTypeError,
    UnknownIssuerError,
    UnsupportedCapabilityError,
)
from certctl_core.host import PluginHost, Registry
from tests.core.fakes import FakeWorld, generation_of, make_csr, tampered_csr_der

pytestmark = pytest.mark.anyio

#: Guards against a hanging registry; never part of an assertion.
GUARD = 10.0


def _registry(world: FakeWorld, *, drain_timeout: float = 30.0) -> Registry:
    return Registry({"fake": world.connector_type()}, drain_timeout=drain_timeout)


def _request(
    profile: Profile | None = None, validity: dt.timedelta | None = None
) -> CertificateRequest:
    return CertificateRequest.from_csr(make_csr(), profile=profile, validity=validity)


# -- hot swap under load ---------------------------------------------------------------


async def test_every_call_is_served_by_one_generation_when_rebuilt_50_times_under_load() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    request = _request()
    rebuilds_done = 0
    progress = asyncio.Condition()

    async def call(after: int) -> IssuedCertificate:
        # Start each call once ``after`` rebuilds are done, so that the calls start under
        # every generation however the machine's load schedules the tasks.
        async with progress:
            await progress.wait_for(lambda: rebuilds_done >= after)
        await asyncio.sleep(random.uniform(0, 0.002))
        return await registry.issue("ca", request)

    async def rebuild_50_times() -> None:
        nonlocal rebuilds_done
        for number in range(1, 51):
            await asyncio.sleep(0.002)
            assert await registry.rebuild("ca", {"generation": number}) is True
            async with progress:
                rebuilds_done += 1
                progress.notify_all()

    results = await asyncio.gather(
        *(call(n % 51) for n in range(1000)), rebuild_50_times(), return_exceptions=True
    )

    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert rebuilds_done == 50
    issued = [r for r in results[:1000] if isinstance(r, IssuedCertificate)]
    assert len(issued) == 1000
    served_by = [generation_of(cert) for cert in issued]
    assert set(served_by) <= set(range(51))
    assert len(set(served_by)) > 1, "the rebuilds never overlapped the calls"
    # Every call counted by exactly the generation whose mark its certificate carries.
    for instance in world.instances:
        assert instance.served == served_by.count(instance.generation)
    assert sorted(i.generation for i in world.instances) == list(range(51))
    assert registry.info("ca").generation == 51

    await asyncio.wait_for(registry.aclose(), GUARD)

    assert [i.close_calls for i in world.instances] == [1] * 51
    assert not any(i.closed_while_active for i in world.instances)
    assert all(i.closed for i in world.instances)


async def test_old_generation_closes_only_after_its_running_call_ends_when_rebuilt() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    gate = asyncio.Event()

    async def held_call() -> int:
        async with registry.lease("ca") as connector:
            await gate.wait()
            return (await connector.issue(_request())).serial

    task = asyncio.create_task(held_call())
    await asyncio.sleep(0)
    assert await registry.rebuild("ca", {"generation": 1}) is True
    for _ in range(5):
        await asyncio.sleep(0)
    old, new = world.generation(0), world.generation(1)
    assert old.close_calls == 0
    assert generation_of(await registry.issue("ca", _request())) == 1

    gate.set()
    assert await asyncio.wait_for(task, GUARD) > 0
    for _ in range(5):
        await asyncio.sleep(0)
    assert old.close_calls == 1
    assert not old.closed_while_active
    assert new.close_calls == 0

    await registry.aclose()
    assert (old.close_calls, new.close_calls) == (1, 1)


# -- rebuild outcomes ------------------------------------------------------------------


async def test_old_generation_keeps_serving_when_rebuild_raises_config_error() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    with pytest.raises(ConfigError) as info:
        await registry.rebuild("ca", {"generation": 1, "invalid": True})

    assert len(info.value.problems) == 2
    assert registry.info("ca").generation == 1
    assert generation_of(await registry.issue("ca", _request())) == 0
    assert world.generation(0).close_calls == 0
    await registry.aclose()
    assert world.generation(0).close_calls == 1


async def test_factory_bug_becomes_certctl_error_when_factory_raises_foreign_exception() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    with pytest.raises(CertctlError) as info:
        await registry.rebuild("ca", {"explode": True})

    assert type(info.value) is CertctlError
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.issuer_id == "ca"
    assert info.value.connector == "fake"
    assert "RuntimeError" in str(info.value)
    assert generation_of(await registry.issue("ca", _request())) == 0

    with pytest.raises(CertctlError) as build_info:
        await registry.build("other", "fake", {"explode": True})
    assert type(build_info.value) is CertctlError
    assert [i.issuer_id for i in registry.issuers()] == ["ca"]
    await registry.aclose()


async def test_rebuild_is_a_no_op_when_config_is_equal() -> None:
    world = FakeWorld()
    registry = _registry(world)
    config = {"generation": 0, "nested": {"a": [1, 2]}}
    await registry.build("ca", "fake", config)

    assert await registry.rebuild("ca", {"generation": 0, "nested": {"a": [1, 2]}}) is False
    assert await registry.rebuild("ca", {"generation": 0, "nested": {"a": [1, 2]}}) is False
    assert world.factory_calls == 1
    assert registry.info("ca").generation == 1
    assert world.generation(0).close_calls == 0
    await registry.aclose()


async def test_rebuild_compares_against_a_snapshot_when_caller_mutates_its_config() -> None:
    world = FakeWorld()
    registry = _registry(world)
    config: dict[str, object] = {"generation": 0}
    await registry.build("ca", "fake", config)
    config["generation"] = 1

    assert await registry.rebuild("ca", config) is True
    assert registry.info("ca").generation == 2
    await registry.aclose()


async def test_rebuild_builds_a_new_generation_when_forced_with_equal_config() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    assert await registry.rebuild("ca", {"generation": 0}, force=True) is True

    assert world.factory_calls == 2
    assert registry.info("ca").generation == 2
    await asyncio.wait_for(registry.aclose(), GUARD)
    assert [i.close_calls for i in world.instances] == [1, 1]


async def test_rebuilds_of_one_issuer_never_overlap_when_called_concurrently() -> None:
    world = FakeWorld(build_delay=0.005)
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    results = await asyncio.gather(
        *(registry.rebuild("ca", {"generation": n}) for n in range(1, 11))
    )

    assert results == [True] * 10
    assert world.overlapping_builds == 0
    assert world.factory_calls == 11
    assert registry.info("ca").generation == 11
    await asyncio.wait_for(registry.aclose(), GUARD)
    assert [i.close_calls for i in world.instances] == [1] * 11


async def test_second_of_two_equal_rebuilds_is_a_no_op_when_they_race() -> None:
    world = FakeWorld(build_delay=0.005)
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    results = await asyncio.gather(
        registry.rebuild("ca", {"generation": 1}), registry.rebuild("ca", {"generation": 1})
    )

    assert list(results) == [True, False]
    assert world.factory_calls == 2
    await registry.aclose()


async def test_rebuilds_of_different_issuers_may_overlap_when_called_concurrently() -> None:
    # The lock is per issuer: this shows the overlap detector above can fire at all.
    world = FakeWorld(build_delay=0.005)
    registry = _registry(world)

    await asyncio.gather(
        registry.rebuild("a", {"generation": 0}, type_name="fake"),
        registry.rebuild("b", {"generation": 1}, type_name="fake"),
    )

    assert world.overlapping_builds >= 1
    assert sorted(i.issuer_id for i in registry.issuers()) == ["a", "b"]
    await registry.aclose()


async def test_rebuild_switches_type_when_type_name_differs_with_equal_config() -> None:
    world = FakeWorld()
    registry = Registry({"fake": world.connector_type(), "fake2": world.connector_type("fake2")})
    await registry.build("ca", "fake", {"generation": 0})

    assert await registry.rebuild("ca", {"generation": 0}, type_name="fake2") is True
    assert await registry.rebuild("ca", {"generation": 0}, type_name="fake2") is False

    assert registry.info("ca").type_name == "fake2"
    assert world.factory_calls == 2
    await registry.aclose()


# -- draining and closing --------------------------------------------------------------


async def test_close_does_not_wait_forever_when_a_call_never_finishes() -> None:
    world = FakeWorld()
    registry = _registry(world, drain_timeout=0.05)
    await registry.build("ca", "fake", {"generation": 0, "hang": True})
    stuck = asyncio.create_task(registry.issue("ca", _request()))
    await asyncio.wait_for(world.issue_started.wait(), GUARD)

    assert await registry.rebuild("ca", {"generation": 1}) is True
    await asyncio.wait_for(registry.aclose(), GUARD)

    old = world.generation(0)
    assert old.close_calls == 1
    assert old.closed_while_active  # closed under the stuck call, as documented
    assert world.generation(1).close_calls == 1
    assert not stuck.done()
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck


async def test_lease_is_released_when_a_running_call_is_cancelled() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0, "hang": True})
    stuck = asyncio.create_task(registry.issue("ca", _request()))
    await asyncio.wait_for(world.issue_started.wait(), GUARD)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck

    assert await registry.rebuild("ca", {"generation": 1}) is True
    for _ in range(5):
        await asyncio.sleep(0)

    # Closed at once: the cancelled call no longer holds generation 0.
    assert world.generation(0).close_calls == 1
    assert not world.generation(0).closed_while_active
    await registry.aclose()


async def test_close_failure_is_logged_not_raised_when_connector_close_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0, "close_raises": True})
    caplog.set_level(logging.ERROR, logger="certctl_core.registry")

    assert await registry.rebuild("ca", {"generation": 1, "close_raises": True}) is True
    await asyncio.wait_for(registry.aclose(), GUARD)

    assert [i.close_calls for i in world.instances] == [1, 1]
    failed = [r for r in caplog.records if r.name == "certctl_core.registry"]
    assert len(failed) == 2
    assert all(r.levelno == logging.ERROR and r.exc_info for r in failed)
    assert all("close failed on purpose" in str(r.exc_info[1]) for r in failed if r.exc_info)


async def test_aclose_closes_every_issuer_when_several_are_live() -> None:
    world = FakeWorld()
    async with _registry(world) as registry:
        await registry.build("a", "fake", {"generation": 0})
        await registry.build("b", "fake", {"generation": 1})
    assert [i.close_calls for i in world.instances] == [1, 1]
    assert registry.issuers() == []


# -- lookup errors, build and remove ---------------------------------------------------


async def test_unknown_issuer_error_when_issuer_id_was_never_built() -> None:
    registry = _registry(FakeWorld())

    with pytest.raises(UnknownIssuerError) as info:
        await registry.issue("nope", _request())
    assert info.value.issuer_id == "nope"
    with pytest.raises(UnknownIssuerError):
        await registry.revoke("nope", 1)
    with pytest.raises(UnknownIssuerError):
        registry.info("nope")
    with pytest.raises(UnknownIssuerError):
        await registry.rebuild("nope", {"generation": 0})
    with pytest.raises(UnknownIssuerError):
        await registry.remove("nope")


async def test_unknown_type_error_names_installed_types_when_type_is_not_installed() -> None:
    world = FakeWorld()
    registry = _registry(world)

    with pytest.raises(UnknownConnectorTypeError) as info:
        await registry.build("ca", "nosuch", {})

    assert "nosuch" in str(info.value)
    assert info.value.hint is not None
    assert "fake" in info.value.hint
    assert registry.issuers() == []
    await registry.build("ca", "fake", {"generation": 0})
    with pytest.raises(UnknownConnectorTypeError):
        await registry.rebuild("ca", {"generation": 0}, type_name="nosuch")
    assert registry.info("ca").type_name == "fake"
    await registry.aclose()


async def test_build_raises_when_issuer_id_already_exists() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    with pytest.raises(CertctlError) as info:
        await registry.build("ca", "fake", {"generation": 1})

    assert info.value.issuer_id == "ca"
    assert world.factory_calls == 1
    assert generation_of(await registry.issue("ca", _request())) == 0
    await registry.aclose()


async def test_config_error_when_config_is_not_a_mapping() -> None:
    registry = _registry(FakeWorld())

    with pytest.raises(ConfigError) as info:
        await registry.build("ca", "fake", ["not", "a", "mapping"])  # type: ignore[arg-type]

    assert info.value.problems[0].field == "config"


async def test_remove_closes_the_connector_and_forgets_the_issuer() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    await registry.remove("ca")
    await asyncio.wait_for(registry.aclose(), GUARD)

    assert world.generation(0).close_calls == 1
    assert registry.issuers() == []
    with pytest.raises(UnknownIssuerError):
        await registry.issue("ca", _request())
    await registry.build("ca", "fake", {"generation": 1})
    assert registry.info("ca").generation == 2
    await registry.aclose()


async def test_rebuild_creates_the_issuer_when_absent_and_type_is_given() -> None:
    world = FakeWorld()
    registry = _registry(world)

    assert await registry.rebuild("ca", {"generation": 7}, type_name="fake") is True

    assert generation_of(await registry.issue("ca", _request())) == 7
    await registry.aclose()


# -- profile policy around issue -------------------------------------------------------


async def test_validity_is_capped_before_the_connector_sees_it_when_above_max_ttl() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    profile = Profile(name="short", max_ttl=dt.timedelta(hours=1))

    issued = await registry.issue("ca", _request(profile=profile, validity=dt.timedelta(hours=10)))

    assert world.generation(0).seen_validities == [dt.timedelta(hours=1)]
    assert issued.not_after - issued.not_before <= dt.timedelta(hours=1)
    await registry.aclose()


async def test_validity_is_passed_unchanged_when_below_max_ttl() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    profile = Profile(name="short", max_ttl=dt.timedelta(hours=1))

    await registry.issue("ca", _request(profile=profile, validity=dt.timedelta(minutes=5)))
    await registry.issue("ca", _request(profile=profile))

    assert world.generation(0).seen_validities == [dt.timedelta(minutes=5), None]
    await registry.aclose()


async def test_certificate_is_accepted_when_profile_max_ttl_reaches_beyond_year_9999() -> None:
    # A valid Profile ("practically unlimited": about 31,700 years). The connector issues
    # its 24-hour default, which is well within the cap, so the call must succeed.
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    profile = Profile.from_mapping({"name": "forever", "max_ttl_seconds": 10**12})

    issued = await registry.issue("ca", _request(profile=profile))

    assert issued.not_after - issued.not_before == dt.timedelta(hours=24)
    await registry.aclose()


async def test_policy_violation_when_connector_returns_a_longer_certificate() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0, "extra_seconds": 7200})
    profile = Profile(name="short", max_ttl=dt.timedelta(hours=1))

    with pytest.raises(PolicyViolationError) as info:
        await registry.issue("ca", _request(profile=profile, validity=dt.timedelta(hours=5)))

    assert info.value.issuer_id == "ca"
    assert info.value.connector == "fake"
    assert "short" in str(info.value)
    await registry.aclose()


async def test_invalid_response_when_connector_certifies_another_key() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0, "wrong_key": True})

    with pytest.raises(InvalidResponseError) as info:
        await registry.issue("ca", _request())

    assert info.value.issuer_id == "ca"
    await registry.aclose()


async def test_csr_is_refused_before_the_connector_is_called_when_signature_is_bad() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    # A request cannot even be built around a CSR whose signature does not verify.
    with pytest.raises(InvalidRequestError, match="signature"):
        CertificateRequest.from_der(tampered_csr_der())

    assert world.issue_calls == 0
    await registry.aclose()


async def test_error_names_issuer_and_type_when_the_connector_raises_without_them() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    async with registry.lease("ca") as connector:
        pass

    async def bare(serial: int, reason: object = None) -> object:
        raise RejectedError("no such serial", status=404)

    connector.revoke = bare  # type: ignore[method-assign, assignment]
    with pytest.raises(RejectedError) as info:
        await registry.revoke("ca", 5)

    assert (info.value.issuer_id, info.value.connector) == ("ca", "fake")
    await registry.aclose()


async def test_revoke_refuses_remove_from_crl_without_calling_the_connector() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    async with registry.lease("ca") as connector:
        pass
    calls: list[int] = []

    async def recording(serial: int, reason: object = None) -> object:
        calls.append(serial)
        raise AssertionError("the connector must not be called")

    connector.revoke = recording  # type: ignore[method-assign, assignment]
    with pytest.raises(InvalidRequestError) as info:
        await registry.revoke("ca", 5, RevocationReason.REMOVE_FROM_CRL)

    assert calls == []
    assert info.value.issuer_id == "ca"
    await registry.aclose()


async def test_error_keeps_the_issuer_it_names_when_the_connector_names_one() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})
    async with registry.lease("ca") as connector:
        pass

    async def named(serial: int, reason: object = None) -> object:
        raise RejectedError("elsewhere", issuer_id="other", connector="upstream")

    connector.revoke = named  # type: ignore[method-assign, assignment]
    with pytest.raises(RejectedError) as info:
        await registry.revoke("ca", 5)

    assert (info.value.issuer_id, info.value.connector) == ("other", "upstream")
    await registry.aclose()


async def test_factory_error_names_issuer_and_type_when_the_factory_omits_them() -> None:
    async def failing(issuer_id: str, config: Mapping[str, Any]) -> IssuerPort:
        raise ConfigError([ConfigProblem("url", "missing")])

    host = PluginHost.from_plugins({})
    host.connector_types["bare"] = ConnectorType("bare", failing)
    registry = Registry(host)

    with pytest.raises(ConfigError) as info:
        await registry.build("corp", "bare", {})

    assert (info.value.issuer_id, info.value.connector) == ("corp", "bare")
    await registry.aclose()


# -- two-phase change: prepare, then install or discard --------------------------------


async def test_prepared_generation_serves_nothing_until_installed() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    prepared = await registry.prepare("ca", {"generation": 1})

    assert prepared.changed is True
    assert registry.info("ca").generation == 1
    assert generation_of(await registry.issue("ca", _request())) == 0
    await prepared.install()
    assert generation_of(await registry.issue("ca", _request())) == 1
    await prepared.install()  # a second install does nothing
    await asyncio.wait_for(registry.aclose(), GUARD)
    assert [i.close_calls for i in world.instances] == [1, 1]


async def test_discarded_generation_is_closed_once_and_the_old_one_keeps_serving() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    prepared = await registry.prepare("ca", {"generation": 1})
    await prepared.discard()
    await prepared.discard()
    await prepared.install()  # after discard: nothing

    assert world.generation(1).close_calls == 1
    assert world.generation(0).close_calls == 0
    assert generation_of(await registry.issue("ca", _request())) == 0
    await asyncio.wait_for(registry.aclose(), GUARD)
    assert world.generation(0).close_calls == 1
    assert world.generation(1).close_calls == 1


async def test_prepare_of_a_new_issuer_is_not_listed_until_installed() -> None:
    world = FakeWorld()
    registry = _registry(world)

    prepared = await registry.prepare("ca", {"generation": 0}, type_name="fake")

    assert registry.issuers() == []
    with pytest.raises(UnknownIssuerError):
        registry.info("ca")
    await prepared.discard()
    assert world.generation(0).close_calls == 1
    assert registry.issuers() == []
    await registry.aclose()


async def test_prepare_with_equal_config_changes_nothing() -> None:
    world = FakeWorld()
    registry = _registry(world)
    await registry.build("ca", "fake", {"generation": 0})

    prepared = await registry.prepare("ca", {"generation": 0})

    assert prepared.changed is False
    await prepared.install()
    assert world.factory_calls == 1
    assert registry.info("ca").generation == 1
    await registry.aclose()


# -- files named by the config (ADR 0022) ----------------------------------------------


def _file_registry(world: FakeWorld) -> Registry:
    connector_type = ConnectorType(
        name="fake", factory=world.factory, file_fields=frozenset({"key_path"})
    )
    return Registry({"fake": connector_type})


async def test_equal_config_rebuilds_when_a_named_file_changed_in_place(tmp_path: Any) -> None:
    world = FakeWorld()
    registry = _file_registry(world)
    key = tmp_path / "key.pem"
    key.write_bytes(b"old key")
    config = {"generation": 0, "key_path": str(key)}
    await registry.build("ca", "fake", config)
    assert await registry.rebuild("ca", dict(config)) is False
    assert await registry.files_changed("ca") is False

    key.write_bytes(b"new key")  # overwritten in place: same path, same config

    assert await registry.files_changed("ca") is True
    prepared = await registry.prepare("ca", dict(config))
    assert prepared.changed is True
    await prepared.install()
    assert registry.info("ca").generation == 2
    assert await registry.files_changed("ca") is False
    assert await registry.rebuild("ca", dict(config)) is False
    key.unlink()  # a vanished file is a change too
    assert await registry.files_changed("ca") is True
    await registry.aclose()


async def test_fingerprint_of_a_fifo_is_none_and_does_not_block(tmp_path: Path) -> None:
    from certctl_core.registry import _hash_files

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    regular = tmp_path / "key"
    regular.write_bytes(b"k")

    hashes = await asyncio.wait_for(
        asyncio.to_thread(_hash_files, {"a": fifo, "b": regular, "c": "/dev/zero"}), 5
    )

    assert hashes["a"] is None and hashes["c"] is None
    assert hashes["b"] is not None and len(hashes["b"]) == 64


# -- connectors written against an earlier port ----------------------------------------


class _EarlierConnector:
    """A connector written before ``renewal_info`` joined the port (no IssuerBase)."""

    connector_name = "earlier"
    capabilities = Capabilities(status=False)

    async def close(self) -> None:
        return None


async def test_renewal_info_of_a_connector_without_the_method_is_unsupported() -> None:
    async def factory(issuer_id: str, config: Mapping[str, Any]) -> IssuerPort:
        return _EarlierConnector()  # type: ignore[return-value]

    registry = Registry({"earlier": ConnectorType(name="earlier", factory=factory)})
    await registry.build("old", "earlier", {})
    try:
        with pytest.raises(UnsupportedCapabilityError) as raised:
            await registry.renewal_info("old", stray_certificate(7))
        assert raised.value.issuer_id == "old"
    finally:
        await registry.aclose()
