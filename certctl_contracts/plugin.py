"""The ``certctl_contracts`` pytest plugin, registered through the ``pytest11`` entry point.

It is inert: it defines no hooks or fixtures and collects nothing. Its only effect is to
ask pytest to rewrite the asserts of the suite's modules, so that a failing contract
check shows the values involved. This must happen before those modules are imported,
which is why this module imports none of them (nor does ``certctl_contracts/__init__``).
The suite runs only where a test module subclasses ``IssuerContract``.
"""

from __future__ import annotations

import pytest

__all__ = ["REWRITTEN_MODULES"]

#: The suite's modules whose asserts pytest rewrites.
REWRITTEN_MODULES = ("certctl_contracts.suite", "certctl_contracts.checks")

pytest.register_assert_rewrite(*REWRITTEN_MODULES)
