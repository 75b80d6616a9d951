"""``python -m certctl_host.cli``: the same as the ``certctl`` console script."""

from __future__ import annotations

from certctl_host.cli import console_main

console_main()
