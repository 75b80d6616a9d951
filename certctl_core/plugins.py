"""Plugin discovery: entry points in, connector types out.

:class:`PluginHost` is the one place that talks to pluggy. It loads each entry point of
the ``certctl.connectors`` group in its own loop, so a plugin that fails to import, has a
misspelt hook, or registers a duplicate type name is recorded as a
:class:`PluginFailure` (naming the entry point and its distribution) while the other
plugins still load. ``CERTCTL_DISABLE_PLUGINS`` (comma-separated entry-point or
distribution names) blocks plugins before they are imported.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy

from certctl_core import hookspecs
from certctl_core.errors import PluginError
from certctl_core.ports import ConnectorType
from certctl_core.registrars import BLOCKLIST_ENV, ConnectorRegistrar, HarnessRegistrar

__all__ = [
    "BLOCKLIST_ENV",
    "ENTRY_POINT_GROUP",
    "ConnectorRegistrar",
    "HarnessRegistrar",
    "PluginFailure",
    "PluginHost",
    "create_plugin_manager",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "certctl.connectors"


def create_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager knowing certctl's hook specs (nothing registered yet)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


@attrs.frozen
class PluginFailure:
    """A plugin that did not load, and why."""

    entry_point: str
    distribution: str | None
    reason: str

    def as_error(self) -> PluginError:
        return PluginError(
            f"plugin {self.entry_point!r} (distribution {self.distribution or 'unknown'}) "
            f"failed to load: {self.reason}",
            entry_point=self.entry_point,
            distribution=self.distribution,
        )


_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras_providing(dist: importlib.metadata.Distribution, module: str) -> list[str]:
    """The extras of ``dist`` whose requirements name a distribution called ``module``."""
    extras: set[str] = set()
    for requirement in dist.requires or []:
        name = _REQUIREMENT_NAME.match(requirement)
        marker = _EXTRA_MARKER.search(requirement)
        if name and marker and _normalised(name.group()) == _normalised(module):
            extras.add(marker.group(1))
    return sorted(extras)


def _import_failure(exc: Exception, ep: importlib.metadata.EntryPoint) -> str:
    """Why a plugin did not import, naming what to install when a dependency is missing."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    own = missing == ep.module or ep.module.startswith(f"{missing}.")
    if missing and not own:
        dist = ep.dist
        module = missing.partition(".")[0]
        extras = _extras_providing(dist, module) if dist is not None else []
        if dist is not None and extras:
            how = f"pip install '{dist.name}[{','.join(extras)}]'"
        else:
            how = f"install the package that provides the module {module!r}"
        return f"missing dependency {module!r}: {how}"
    return f"import failed: {type(exc).__name__}: {exc}"


def _blocked_from_env() -> frozenset[str]:
    raw = os.environ.get(BLOCKLIST_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@attrs.define
class PluginHost:
    """Typed facade over pluggy: loads plugins and answers the hooks.

    Build it with :meth:`discover` (entry points) or :meth:`from_plugins` (objects, for
    tests and embedding). Nothing happens at import time.
    """

    pm: pluggy.PluginManager
    connector_types: dict[str, ConnectorType] = attrs.field(factory=dict)
    #: plugin name -> the connector types it registered
    plugin_types: dict[str, list[str]] = attrs.field(factory=dict)
    failures: list[PluginFailure] = attrs.field(factory=list)
    blocked: list[str] = attrs.field(factory=list)
    distributions: dict[str, str | None] = attrs.field(factory=dict)

    @classmethod
    def discover(
        cls,
        *,
        group: str = ENTRY_POINT_GROUP,
        blocked: Iterable[str] | None = None,
    ) -> PluginHost:
        """Load every plugin of the entry-point group, except blocked ones.

        ``blocked`` defaults to the names in ``CERTCTL_DISABLE_PLUGINS``.
        """
        host = cls(create_plugin_manager())
        block = frozenset(blocked) if blocked is not None else _blocked_from_env()
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in block or (dist is not None and dist in block):
                log.info("plugin %s (%s) blocked by %s", ep.name, dist, BLOCKLIST_ENV)
                host.blocked.append(ep.name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error is the plugin's fault
                host._fail(ep.name, dist, _import_failure(exc, ep))
                continue
            host._add(ep.name, plugin, dist)
        return host

    @classmethod
    def from_plugins(cls, plugins: Mapping[str, object]) -> PluginHost:
        """Load plugin objects given by name (no entry points involved)."""
        host = cls(create_plugin_manager())
        for name, plugin in plugins.items():
            host._add(name, plugin, None)
        return host

    def _fail(self, name: str, dist: str | None, reason: str) -> None:
        failure = PluginFailure(name, dist, reason)
        log.error("%s", failure.as_error())
        self.failures.append(failure)

    def _add(self, name: str, plugin: object, dist: str | None) -> None:
        self.distributions[name] = dist
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy raises ValueError/PluginValidationError
            self._fail(name, dist, f"invalid plugin: {exc}")
            return
        unknown = [
            impl.function.__name__
            for caller in self.pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and not impl.optionalhook
        ]
        if unknown:
            self.pm.unregister(plugin)
            self._fail(name, dist, f"unknown hook(s) {', '.join(sorted(unknown))}: misspelt?")
            return
        taken = {t: owner for owner, names in self.plugin_types.items() for t in names}
        registrar = ConnectorRegistrar(name, taken)
        try:
            self._call_one(plugin, "certctl_register_connectors", registrar=registrar)
        except Exception as exc:  # noqa: BLE001 - a plugin's hook may raise anything
            self.pm.unregister(plugin)
            detail = exc.message if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self._fail(name, dist, f"certctl_register_connectors raised: {detail}")
            return
        for connector_type in registrar.added:
            self.connector_types[connector_type.name] = connector_type
        self.plugin_types[name] = [t.name for t in registrar.added]

    def _call_one(self, plugin: object, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call one plugin's implementation of a hook with the arguments it accepts."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook_name)
        results = []
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                results.append(impl.function(**{a: kwargs[a] for a in impl.argnames}))
        return results

    def harnesses(self) -> dict[str, Callable[..., Any]]:
        """Contract-test harness factories from every loaded plugin."""
        registrar = HarnessRegistrar()
        self.pm.hook.certctl_register_harnesses(registrar=registrar)
        return dict(registrar.harnesses)

    def plugin_of(self, type_name: str) -> str | None:
        for plugin, names in self.plugin_types.items():
            if type_name in names:
                return plugin
        return None
