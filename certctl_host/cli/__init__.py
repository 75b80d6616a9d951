"""The ``certctl`` command line: a driver of the issuer registry for operators and scripts.

``certctl plugins | check | issue | renew | revoke | status | chain | crl``; see
``certctl --help`` and ``docs/cli.md``. The CLI reaches connectors only through the
plugin registry (``Registry(PluginHost.discover())``), never by importing an adapter.
"""

from __future__ import annotations

from certctl_host.cli._app import build_parser, console_main, main
from certctl_host.cli._exit import ExitCode, UsageError

__all__ = ["ExitCode", "UsageError", "build_parser", "console_main", "main"]
