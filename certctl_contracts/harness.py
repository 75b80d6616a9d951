"""What an adapter hands the contract suite: a live issuer and how to check its work.

A *harness factory* is a callable taking a temporary directory and returning an async
context manager that yields a :class:`LiveIssuer` and, on exit, stops whatever it
started (a CA process, a state directory's users). Plugins register harness factories
through the ``certctl_register_harnesses`` hook; connector authors may instead override
the ``live_issuer`` fixture of :class:`certctl_contracts.IssuerContract` directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import attrs
from cryptography import x509

from certctl_core.ports import IssuerPort

__all__ = ["HarnessFactory", "LiveIssuer"]


@attrs.frozen
class LiveIssuer:
    """A connector under test, connected to a live CA.

    ``trust_anchors``: the roots the issued chains must verify to (checked with
    ``cryptography``'s verifier, never by asking the adapter). ``secrets``: the secret
    strings in its configuration (passwords, key material) that must never show up in
    ``repr``, ``str``, errors or logs. ``default_validity``: the lifetime the CA gives
    when none is requested (the MaxTTL test asks for less). ``open_connections``:
    optional side channel counting the adapter's open connections to the CA (e.g. from
    the HTTP client's pool, or the CA process's view); when given, the suite checks it
    is zero after ``close()``, including after a cancelled call.
    """

    issuer: IssuerPort
    trust_anchors: tuple[x509.Certificate, ...] = attrs.field(repr=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    default_validity: dt.timedelta | None = None
    open_connections: Callable[[], int] | None = attrs.field(default=None, repr=False)


HarnessFactory = Callable[[Path], AbstractAsyncContextManager[LiveIssuer]]
