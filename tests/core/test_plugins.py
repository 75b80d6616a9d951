"""PluginHost: loading plugin objects and entry points, failures, the block-list."""

from __future__ import annotations

import sys
import textwrap
import types
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from certctl_core import (
    ConnectorRegistrar,
    ConnectorType,
    HarnessRegistrar,
    IssuerPort,
    PluginError,
    hookimpl,
)
from certctl_core.host import BLOCKLIST_ENV, ENTRY_POINT_GROUP, PluginFailure, PluginHost


async def _factory(issuer_id: str, config: Mapping[str, Any]) -> IssuerPort:
    raise NotImplementedError


def _plugin(*type_names: str) -> types.SimpleNamespace:
    """A plugin object registering one connector type per name."""

    @hookimpl
    def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
        for name in type_names:
            registrar.add(ConnectorType(name=name, factory=_factory))

    return types.SimpleNamespace(certctl_register_connectors=certctl_register_connectors)


class ClassPlugin:
    """A plugin written as a class with a hookimpl method."""

    @hookimpl
    def certctl_register_connectors(self, registrar: ConnectorRegistrar) -> None:
        registrar.add(ConnectorType(name="classy", factory=_factory, version="2.0"))


# -- from_plugins ----------------------------------------------------------------------


def test_connector_types_are_collected_when_plugins_are_good() -> None:
    host = PluginHost.from_plugins({"one": _plugin("alpha", "beta"), "two": ClassPlugin()})

    assert host.failures == []
    assert sorted(host.connector_types) == ["alpha", "beta", "classy"]
    assert host.connector_types["classy"].version == "2.0"
    assert host.plugin_types == {"one": ["alpha", "beta"], "two": ["classy"]}
    assert host.plugin_of("beta") == "one"
    assert host.plugin_of("classy") == "two"
    assert host.plugin_of("nosuch") is None


def test_first_plugin_keeps_the_type_when_a_second_plugin_registers_the_same_name() -> None:
    host = PluginHost.from_plugins(
        {"first": _plugin("shared"), "second": _plugin("own", "shared"), "third": _plugin("z")}
    )

    assert [f.entry_point for f in host.failures] == ["second"]
    failure = host.failures[0]
    assert "first" in failure.reason
    assert "shared" in failure.reason
    message = str(failure.as_error())
    assert "'second'" in message
    assert "'first'" in message
    assert host.plugin_of("shared") == "first"
    # The failed plugin's other types are not registered either; later plugins still load.
    assert sorted(host.connector_types) == ["shared", "z"]
    assert "second" not in host.plugin_types
    assert host.pm.get_plugin("second") is None


def test_failure_is_recorded_when_one_plugin_registers_a_name_twice() -> None:
    host = PluginHost.from_plugins({"twice": _plugin("dup", "dup")})

    assert [f.entry_point for f in host.failures] == ["twice"]
    assert "dup" in host.failures[0].reason
    assert host.connector_types == {}


def test_failure_is_recorded_when_a_hook_name_is_misspelt() -> None:
    @hookimpl
    def certctl_register_conectors(registrar: ConnectorRegistrar) -> None:
        registrar.add(ConnectorType(name="typo", factory=_factory))

    typo = types.SimpleNamespace(certctl_register_conectors=certctl_register_conectors)
    host = PluginHost.from_plugins({"typo": typo, "good": _plugin("fine")})

    assert [f.entry_point for f in host.failures] == ["typo"]
    assert "certctl_register_conectors" in host.failures[0].reason
    assert "misspelt" in host.failures[0].reason
    assert not host.pm.is_registered(typo)
    assert sorted(host.connector_types) == ["fine"]


def test_unknown_hook_is_accepted_when_marked_optional() -> None:
    @hookimpl(optionalhook=True)
    def certctl_some_future_hook() -> None:
        raise AssertionError("never called")

    plugin = types.SimpleNamespace(certctl_some_future_hook=certctl_some_future_hook)
    host = PluginHost.from_plugins({"future": plugin})

    assert host.failures == []
    assert host.pm.is_registered(plugin)


def test_other_plugins_load_when_one_plugin_hook_raises() -> None:
    @hookimpl
    def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
        registrar.add(ConnectorType(name="half", factory=_factory))
        raise KeyError("missing setting")

    bad = types.SimpleNamespace(certctl_register_connectors=certctl_register_connectors)
    host = PluginHost.from_plugins({"before": _plugin("a"), "bad": bad, "after": _plugin("b")})

    assert [f.entry_point for f in host.failures] == ["bad"]
    assert "KeyError" in host.failures[0].reason
    assert "missing setting" in host.failures[0].reason
    assert sorted(host.connector_types) == ["a", "b"]
    assert not host.pm.is_registered(bad)


def test_failure_is_recorded_when_a_hookimpl_takes_an_argument_the_spec_lacks() -> None:
    @hookimpl
    def certctl_register_connectors(registrar: ConnectorRegistrar, extra: int) -> None:
        raise AssertionError("never called")

    bad = types.SimpleNamespace(certctl_register_connectors=certctl_register_connectors)
    host = PluginHost.from_plugins({"greedy": bad, "good": _plugin("ok")})

    assert [f.entry_point for f in host.failures] == ["greedy"]
    assert "extra" in host.failures[0].reason
    assert sorted(host.connector_types) == ["ok"]


def test_hookimpls_are_called_when_they_take_fewer_arguments_than_the_spec() -> None:
    calls: list[str] = []

    @hookimpl
    def certctl_register_connectors() -> None:
        calls.append("connectors")

    @hookimpl
    def certctl_register_harnesses() -> None:
        calls.append("harnesses")

    plugin = types.SimpleNamespace(
        certctl_register_connectors=certctl_register_connectors,
        certctl_register_harnesses=certctl_register_harnesses,
    )
    host = PluginHost.from_plugins({"terse": plugin})

    assert host.failures == []
    assert host.plugin_types == {"terse": []}
    assert host.harnesses() == {}
    assert calls == ["connectors", "harnesses"]


def test_harnesses_are_collected_from_every_plugin_when_registered() -> None:
    def harness() -> str:
        return "h"

    @hookimpl
    def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
        registrar.add("fake-live", harness)

    plugin = types.SimpleNamespace(certctl_register_harnesses=certctl_register_harnesses)
    host = PluginHost.from_plugins({"h": plugin, "plain": _plugin("x")})

    assert host.harnesses() == {"fake-live": harness}


def test_plugin_error_names_entry_point_and_distribution_when_built_from_failure() -> None:
    error = PluginFailure("myplugin", "my-dist", "import failed: boom").as_error()

    assert isinstance(error, PluginError)
    assert (error.entry_point, error.distribution) == ("myplugin", "my-dist")
    assert "myplugin" in str(error)
    assert "my-dist" in str(error)
    assert "boom" in str(error)


# -- entry-point discovery -------------------------------------------------------------


@attrs.frozen
class Dist:
    """A fake installed distribution: its name and ``entry point name -> module`` map."""

    name: str
    entry_points: dict[str, str]
    #: ``Requires-Dist`` lines, markers included
    requires: tuple[str, ...] = ()


GOOD_MODULE = """
from certctl_core import ConnectorType, hookimpl

async def _factory(issuer_id, config):
    raise NotImplementedError

@hookimpl
def certctl_register_connectors(registrar):
    registrar.add(ConnectorType(name={type_name!r}, factory=_factory))
"""

BROKEN_MODULE = """
raise ImportError("this plugin needs a library that is not installed")
"""

MUST_NOT_IMPORT_MODULE = """
raise RuntimeError("a blocked plugin was imported")
"""


@attrs.frozen
class Site:
    """A temporary site directory holding fake distributions, on sys.path."""

    path: Path
    uid: str
    group: str

    def module(self, stem: str) -> str:
        return f"ctp_{self.uid}_{stem}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    uid = uuid.uuid4().hex[:8]
    result = Site(tmp_path, uid, f"certctl.test.{uid}")
    monkeypatch.delenv(BLOCKLIST_ENV, raising=False)
    yield result
    for name in [m for m in sys.modules if m.startswith(f"ctp_{uid}_")]:
        del sys.modules[name]


def _install(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    dists: list[Dist],
    modules: dict[str, str],
    group: str | None = None,
) -> None:
    """Write modules and ``*.dist-info`` directories, then put the site on sys.path."""
    for stem, source in modules.items():
        (site.path / f"{site.module(stem)}.py").write_text(textwrap.dedent(source))
    for dist in dists:
        info = site.path / f"{dist.name.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        requires = "".join(f"Requires-Dist: {r}\n" for r in dist.requires)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: 0.1\n{requires}"
        )
        lines = [f"{ep} = {site.module(stem)}" for ep, stem in dist.entry_points.items()]
        (info / "entry_points.txt").write_text(
            f"[{group or site.group}]\n" + "\n".join(lines) + "\n"
        )
    # syspath_prepend also calls importlib.invalidate_caches(), which clears the
    # path caches of both the import system and importlib.metadata.
    monkeypatch.syspath_prepend(str(site.path))


def _standard_site(site: Site, monkeypatch: pytest.MonkeyPatch) -> tuple[Dist, Dist]:
    first = Dist(
        f"certctl-test-a-{site.uid}",
        {"good": "good", "broken": "broken", "missing": "does_not_exist"},
    )
    second = Dist(f"certctl-test-b-{site.uid}", {"zdup": "dup", "other": "other"})
    _install(
        site,
        monkeypatch,
        [first, second],
        {
            "good": GOOD_MODULE.format(type_name=f"tmp-{site.uid}"),
            "broken": BROKEN_MODULE,
            "dup": GOOD_MODULE.format(type_name=f"tmp-{site.uid}"),
            "other": GOOD_MODULE.format(type_name=f"other-{site.uid}"),
        },
    )
    return first, second


def test_broken_plugins_are_reported_and_good_ones_load_when_discovered(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _standard_site(site, monkeypatch)

    host = PluginHost.discover(group=site.group)

    failures = {f.entry_point: f for f in host.failures}
    assert sorted(failures) == ["broken", "missing", "zdup"]
    broken = failures["broken"]
    assert broken.distribution == first.name
    assert "ImportError" in broken.reason
    assert "not installed" in broken.reason
    assert "broken" in str(broken.as_error())
    assert first.name in str(broken.as_error())
    assert failures["missing"].distribution == first.name
    assert "ModuleNotFoundError" in failures["missing"].reason
    # "good" sorts before "zdup", so it owns the type and the duplicate is refused.
    assert failures["zdup"].distribution == second.name
    assert "good" in failures["zdup"].reason
    assert sorted(host.connector_types) == [f"other-{site.uid}", f"tmp-{site.uid}"]
    assert host.plugin_of(f"tmp-{site.uid}") == "good"
    assert host.distributions["good"] == first.name
    assert host.distributions["other"] == second.name
    assert host.blocked == []


def test_failure_names_the_extra_to_install_when_a_plugin_dependency_is_missing(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"ctp_dep_{site.uid}"
    dist = Dist(
        f"certctl-test-c-{site.uid}",
        {"needy": "needy", "unlisted": "unlisted"},
        requires=(f"{missing.replace('_', '-')}>=1; extra == 'fast'", "attrs>=23"),
    )
    _install(
        site,
        monkeypatch,
        [dist],
        {"needy": f"import {missing}\n", "unlisted": "import ctp_nowhere_to_be_found\n"},
    )

    host = PluginHost.discover(group=site.group)

    failures = {f.entry_point: f.reason for f in host.failures}
    assert failures["needy"] == (f"missing dependency {missing!r}: pip install '{dist.name}[fast]'")
    assert failures["unlisted"] == (
        "missing dependency 'ctp_nowhere_to_be_found': "
        "install the package that provides the module 'ctp_nowhere_to_be_found'"
    )
    assert "Traceback" not in str(host.failures)


def test_plugin_is_blocked_before_import_when_env_names_its_entry_point(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = Dist(f"certctl-test-c-{site.uid}", {"good": "good", "forbidden": "forbidden"})
    _install(
        site,
        monkeypatch,
        [dist],
        {"good": GOOD_MODULE.format(type_name="g"), "forbidden": MUST_NOT_IMPORT_MODULE},
    )
    monkeypatch.setenv(BLOCKLIST_ENV, " unrelated , forbidden ")

    host = PluginHost.discover(group=site.group)

    assert host.blocked == ["forbidden"]
    assert host.failures == []
    assert site.module("forbidden") not in sys.modules
    assert sorted(host.connector_types) == ["g"]


def test_every_plugin_of_a_distribution_is_blocked_when_env_names_the_distribution(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = Dist(f"certctl-test-d-{site.uid}", {"good": "good"})
    banned = Dist(f"certctl-test-e-{site.uid}", {"x1": "forbidden", "x2": "forbidden2"})
    _install(
        site,
        monkeypatch,
        [allowed, banned],
        {
            "good": GOOD_MODULE.format(type_name="g"),
            "forbidden": MUST_NOT_IMPORT_MODULE,
            "forbidden2": MUST_NOT_IMPORT_MODULE,
        },
    )
    monkeypatch.setenv(BLOCKLIST_ENV, banned.name)

    host = PluginHost.discover(group=site.group)

    assert sorted(host.blocked) == ["x1", "x2"]
    assert host.failures == []
    assert site.module("forbidden") not in sys.modules
    assert site.module("forbidden2") not in sys.modules
    assert sorted(host.connector_types) == ["g"]


def test_blocked_argument_overrides_env_when_given(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    _standard_site(site, monkeypatch)
    monkeypatch.setenv(BLOCKLIST_ENV, "good")

    host = PluginHost.discover(group=site.group, blocked=["broken", "missing", "zdup"])

    assert sorted(host.blocked) == ["broken", "missing", "zdup"]
    assert host.failures == []
    assert sorted(host.connector_types) == [f"other-{site.uid}", f"tmp-{site.uid}"]


def test_temporary_plugin_loads_when_it_uses_the_default_group(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = Dist(f"certctl-test-f-{site.uid}", {f"tmp-{site.uid}": "good"})
    type_name = f"only-here-{site.uid}"
    _install(
        site,
        monkeypatch,
        [dist],
        {"good": GOOD_MODULE.format(type_name=type_name)},
        group=ENTRY_POINT_GROUP,
    )

    host = PluginHost.discover()

    # Only our own plugin is asserted on: the repository's plugins share this group.
    assert host.plugin_of(type_name) == f"tmp-{site.uid}"
    assert host.distributions[f"tmp-{site.uid}"] == dist.name
    assert all(f.entry_point != f"tmp-{site.uid}" for f in host.failures)


def test_nothing_is_loaded_when_the_group_is_empty() -> None:
    host = PluginHost.discover(group=f"certctl.empty.{uuid.uuid4().hex}")

    assert (host.connector_types, host.failures, host.blocked) == ({}, [], [])


# -- single-process connector types ----------------------------------------------------


def test_a_single_process_type_runs_in_one_process_unless_its_state_is_shared() -> None:
    local = ConnectorType(
        name="local",
        factory=_factory,
        single_process=True,
        shared_state_fields=frozenset({"ledger_url"}),
    )
    assert local.runs_in_one_process({"state_dir": "/var/lib/ca"})
    assert local.runs_in_one_process({"state_dir": "/var/lib/ca", "ledger_url": ""})
    assert not local.runs_in_one_process({"ledger_url": "postgresql://db/ca"})
    remote = ConnectorType(name="remote", factory=_factory)
    assert not remote.runs_in_one_process({})
