"""certctl_contracts: the contract test suite every certctl issuer connector must pass.

For connector authors::

    from certctl_contracts import IssuerContract, LiveIssuer

    class TestMyIssuer(IssuerContract):
        @pytest.fixture
        async def live_issuer(self, tmp_path): ...

``ReferenceCA`` and ``ReferenceIssuer`` (module ``certctl_contracts.reference``) are the
in-memory reference CA and its connector: a fake for hosts' tests, importable without
pytest. See ``docs/contract-suite.md``. Names are imported lazily so that importing this
package (which pytest does when it loads the ``pytest11`` plugin) imports neither pytest
nor the suite: the plugin must register the suite for assert rewriting first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certctl_contracts.csr import build_csr, new_private_key, with_broken_signature
    from certctl_contracts.harness import HarnessFactory, LiveIssuer
    from certctl_contracts.reference import (
        ReferenceCA,
        ReferenceIssuer,
        ca_certificate,
        reference_harness,
    )
    from certctl_contracts.suite import CAPABILITY_NAMES, GuardedIssuer, IssuerContract

__all__ = [
    "CAPABILITY_NAMES",
    "GuardedIssuer",
    "HarnessFactory",
    "IssuerContract",
    "LiveIssuer",
    "ReferenceCA",
    "ReferenceIssuer",
    "build_csr",
    "ca_certificate",
    "new_private_key",
    "reference",
    "reference_harness",
    "with_broken_signature",
]

_WHERE = {
    "CAPABILITY_NAMES": "certctl_contracts.suite",
    "GuardedIssuer": "certctl_contracts.suite",
    "IssuerContract": "certctl_contracts.suite",
    "HarnessFactory": "certctl_contracts.harness",
    "LiveIssuer": "certctl_contracts.harness",
    "ReferenceCA": "certctl_contracts.reference",
    "ReferenceIssuer": "certctl_contracts.reference",
    "ca_certificate": "certctl_contracts.reference",
    "reference_harness": "certctl_contracts.reference",
    "build_csr": "certctl_contracts.csr",
    "new_private_key": "certctl_contracts.csr",
    "with_broken_signature": "certctl_contracts.csr",
}


def __getattr__(name: str) -> Any:
    if name == "reference":  # the module itself: a plugin object for PluginHost.from_plugins
        return importlib.import_module("certctl_contracts.reference")
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'certctl_contracts' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
