"""``python -m certctl_core.cli``: the same as the ``certctl`` console script."""

from __future__ import annotations

from certctl_core.cli import console_main

console_main()
