"""Every certctl plugin hook, in one place.

A plugin is a module (or object) registered under the ``certctl.connectors`` entry-point
group whose functions are marked with :data:`certctl_core.hookimpl`::

    from certctl_core import ConnectorType, hookimpl

    @hookimpl
    def certctl_register_connectors(registrar):
        registrar.add(ConnectorType(name="myca", factory=build_myca, version="1.0"))

Hook implementations may accept fewer arguments than the spec names, so specs can grow
without breaking plugins. Core code never calls ``pm.hook`` directly; it goes through
:class:`certctl_core.host.PluginHost`, which calls each plugin separately so that one
failing plugin is reported and the others still load.
"""

from __future__ import annotations

import pluggy

from certctl_core.registrars import ConnectorRegistrar, HarnessRegistrar

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "certctl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def certctl_register_connectors(registrar: ConnectorRegistrar) -> None:
    """Register the connector types this plugin provides.

    :param registrar: call ``registrar.add(ConnectorType(...))`` once per type. A type
        name already registered by another plugin is refused: the plugin is reported as
        failed (naming both) and its other types are not registered.
    :return: nothing; results are collected through the registrar.

    Called once per plugin when the plugin host loads plugins, in no defined order.

    .. versionadded:: 0.1
    """


@hookspec
def certctl_register_harnesses(registrar: HarnessRegistrar) -> None:
    """Register contract-test harnesses: live test issuers of this plugin's types.

    :param registrar: call ``registrar.add(name, harness_factory)``; the contract suite
        (``certctl_contracts``) documents what a harness factory returns.
    :return: nothing.

    Called only by the contract suite's runner, never in production hosts.

    .. versionadded:: 0.1
    """
