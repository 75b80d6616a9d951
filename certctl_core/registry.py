"""The registry: connector types in, live issuers out, hot-swapped on config change.

A live issuer is a *generation*: one connector built from one config. Every call takes a
lease on the current generation and keeps it for the whole call, so a call is served
wholly by one connector. :meth:`Registry.rebuild` builds and validates the new generation
first (on failure the old one keeps serving and the error is raised), then swaps it in
with a plain assignment, which is atomic on the event loop. The old generation is
retired: new calls no longer reach it, running calls finish on it, and it is closed once,
after its last call ends or ``drain_timeout`` passes, whichever comes first. Rebuilds of
one issuer are serialised by a per-issuer lock; a config equal to the current one is a
no-op unless ``force`` is given. "Equal" covers the content of the files the config
names (``ConnectorType.file_fields``): each generation keeps the SHA-256 of every such
file as it was when it was built, so a key or password file overwritten in place makes
the same config a change (ADR 0022). :meth:`Registry.files_changed` tells whether that
happened.

:meth:`Registry.prepare` splits a rebuild in two for hosts that must persist the config
in between: the new generation is built but not served until ``install()``; ``discard()``
closes it and leaves the current generation untouched.

Every CertctlError raised by a connector, its factory or the policy checks leaves the
registry with ``issuer_id`` and ``connector`` (the type name) filled in: adapters do not
thread them through their raises.

The registry runs in one event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
from cryptography import x509

from certctl_core.domain import (
    CertificateRequest,
    CertificateStatus,
    HealthReport,
    IssuedCertificate,
    RenewalWindow,
    Revocation,
    RevocationReason,
)
from certctl_core.errors import (
    CertctlError,
    ConfigError,
    ConfigProblem,
    InvalidRequestError,
    UnknownConnectorTypeError,
    UnknownIssuerError,
    UnsupportedCapabilityError,
    error_context,
)
from certctl_core.files import read_regular_file
from certctl_core.plugins import PluginHost
from certctl_core.policy import cap_request, verify_issued
from certctl_core.ports import ConnectorType, IssuerPort

__all__ = ["IssuerInfo", "PreparedIssuer", "Registry"]

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Generation:
    issuer_id: str
    type_name: str
    config: Mapping[str, Any] = attrs.field(repr=False)
    connector: IssuerPort
    number: int
    #: config key -> SHA-256 (hex) of the file it named at build time, None if unreadable
    fingerprints: Mapping[str, str | None] = attrs.field(factory=dict)
    active: int = 0
    retired: bool = False
    closed: bool = False
    idle: asyncio.Event = attrs.field(factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        self.idle.set()


@attrs.frozen
class IssuerInfo:
    """What the registry knows of a live issuer (no secrets: the config is not here)."""

    issuer_id: str
    type_name: str
    generation: int


class PreparedIssuer:
    """A generation built by :meth:`Registry.prepare` and not serving yet.

    Exactly one of :meth:`install` and :meth:`discard` takes effect; later calls of
    either do nothing. ``changed`` is False when the config equalled the current one.
    """

    def __init__(self, registry: Registry, issuer_id: str, generation: _Generation | None):
        self._registry = registry
        self.issuer_id = issuer_id
        self._generation = generation
        self.changed = generation is not None

    def __repr__(self) -> str:
        return f"PreparedIssuer(issuer_id={self.issuer_id!r}, changed={self.changed})"

    @property
    def connector(self) -> IssuerPort | None:
        """The new connector, not serving yet (None once installed or discarded, or when
        nothing changed): for checks a host runs before it serves it."""
        return self._generation.connector if self._generation is not None else None

    @property
    def generation(self) -> int | None:
        """The number the new generation will serve under (None when nothing changed)."""
        return self._generation.number if self._generation is not None else None

    def _built(self) -> _Generation:
        if self._generation is None:
            raise CertctlError(
                "no new generation to call: nothing changed, or it was installed or discarded",
                issuer_id=self.issuer_id,
            )
        return self._generation

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        """Issue through the new connector before it serves (a host's trial: e.g. an OCSP
        responder certificate), with the same profile policy as :meth:`Registry.issue`."""
        gen = self._built()
        request = cap_request(request)
        requested_at = dt.datetime.now(dt.UTC)
        with error_context(gen.issuer_id, gen.type_name):
            issued = await gen.connector.issue(request)
            verify_issued(request, issued, requested_at=requested_at)
        return issued

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        gen = self._built()
        with error_context(gen.issuer_id, gen.type_name):
            return await gen.connector.ca_chain()

    async def check(self) -> HealthReport:
        """The new connector's ``check()``: hosts may refuse a config on its verdict."""
        gen = self._built()
        with error_context(gen.issuer_id, gen.type_name):
            return await gen.connector.check()

    async def install(self) -> None:
        """Serve the new generation; the one it replaces drains and is closed once."""
        gen, self._generation = self._generation, None
        if gen is not None:
            await self._registry._install(gen)

    async def discard(self) -> None:
        """Close the new connector unused; the current generation keeps serving."""
        gen, self._generation = self._generation, None
        if gen is not None:
            await self._registry._close(gen)


class Registry:
    """Builds connectors by type and serves calls on live issuers by id."""

    def __init__(
        self,
        types: PluginHost | Mapping[str, ConnectorType],
        *,
        drain_timeout: float = 30.0,
    ) -> None:
        self._types: Mapping[str, ConnectorType] = (
            types.connector_types if isinstance(types, PluginHost) else dict(types)
        )
        self._drain_timeout = drain_timeout
        self._issuers: dict[str, _Generation] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._counter = 0

    # -- types and issuers -------------------------------------------------------------

    @property
    def types(self) -> Mapping[str, ConnectorType]:
        return self._types

    def issuers(self) -> list[IssuerInfo]:
        return [IssuerInfo(g.issuer_id, g.type_name, g.number) for g in self._issuers.values()]

    def info(self, issuer_id: str) -> IssuerInfo:
        gen = self._current(issuer_id)
        return IssuerInfo(gen.issuer_id, gen.type_name, gen.number)

    def _current(self, issuer_id: str) -> _Generation:
        try:
            return self._issuers[issuer_id]
        except KeyError:
            raise UnknownIssuerError(
                f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id
            ) from None

    def _lock(self, issuer_id: str) -> asyncio.Lock:
        return self._locks.setdefault(issuer_id, asyncio.Lock())

    async def _fingerprints(
        self, type_name: str, config: Mapping[str, Any]
    ) -> dict[str, str | None]:
        connector_type = self._types.get(type_name)
        if connector_type is None or not connector_type.file_fields:
            return {}
        paths = {
            key: config[key]
            for key in sorted(connector_type.file_fields)
            if isinstance(config.get(key), str | os.PathLike) and config[key]
        }
        if not paths:
            return {}
        return await asyncio.to_thread(_hash_files, paths)

    async def files_changed(self, issuer_id: str) -> bool:
        """Whether a file the current generation's config names changed since it was
        built (content, by SHA-256; a file that appeared or vanished counts)."""
        gen = self._current(issuer_id)
        return await self._fingerprints(gen.type_name, gen.config) != gen.fingerprints

    async def _construct(
        self, issuer_id: str, type_name: str, config: Mapping[str, Any]
    ) -> _Generation:
        try:
            connector_type = self._types[type_name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownConnectorTypeError(
                f"no installed plugin provides connector type {type_name!r}",
                issuer_id=issuer_id,
                hint=f"installed types: {known}",
            ) from None
        if not isinstance(config, Mapping):
            raise ConfigError(
                [ConfigProblem("config", "must be a mapping of settings")],
                issuer_id=issuer_id,
                connector=type_name,
            )
        frozen_config = copy.deepcopy(dict(config))
        # Hashed before the build: a file changed during it makes the next rebuild build.
        fingerprints = await self._fingerprints(type_name, frozen_config)
        try:
            with error_context(issuer_id, type_name):
                connector = await connector_type.factory(issuer_id, frozen_config)
        except CertctlError:
            raise
        except Exception as exc:
            raise CertctlError(
                f"building the connector failed unexpectedly ({type(exc).__name__})",
                issuer_id=issuer_id,
                connector=type_name,
                hint="this is a bug in the connector plugin; report it to its authors",
            ) from exc
        self._counter += 1
        return _Generation(
            issuer_id, type_name, frozen_config, connector, self._counter, fingerprints
        )

    async def build(self, issuer_id: str, type_name: str, config: Mapping[str, Any]) -> None:
        """Validate ``config`` and build a new issuer; raises if the id is taken."""
        async with self._lock(issuer_id):
            if issuer_id in self._issuers:
                raise CertctlError(
                    f"issuer {issuer_id!r} already exists",
                    issuer_id=issuer_id,
                    hint="use rebuild() to change its configuration",
                )
            self._issuers[issuer_id] = await self._construct(issuer_id, type_name, config)

    async def prepare(
        self,
        issuer_id: str,
        config: Mapping[str, Any],
        *,
        type_name: str | None = None,
        force: bool = False,
    ) -> PreparedIssuer:
        """Build and validate a new generation of ``issuer_id`` without serving it.

        The first phase of a two-phase change: the caller persists the config, then calls
        :meth:`PreparedIssuer.install` (the new generation serves, the old one drains) or,
        if persisting failed, :meth:`PreparedIssuer.discard` (the new connector is closed;
        the current generation was never touched). A config equal to the current one (and
        no ``force``) gives a handle whose ``changed`` is False and whose install does
        nothing. Raises what building raises; nothing changes then.
        """
        async with self._lock(issuer_id):
            gen = await self._prepare_locked(issuer_id, config, type_name, force)
        return PreparedIssuer(self, issuer_id, gen)

    async def _prepare_locked(
        self, issuer_id: str, config: Mapping[str, Any], type_name: str | None, force: bool
    ) -> _Generation | None:
        old = self._issuers.get(issuer_id)
        if old is None and type_name is None:
            raise UnknownIssuerError(
                f"no issuer {issuer_id!r} to rebuild",
                issuer_id=issuer_id,
                hint="give type_name to create it",
            )
        new_type = type_name or (old.type_name if old else "")
        if (
            old is not None
            and not force
            and new_type == old.type_name
            and dict(config) == old.config
            and await self._fingerprints(new_type, config) == old.fingerprints
        ):
            return None
        return await self._construct(issuer_id, new_type, config)

    async def _install(self, new: _Generation) -> None:
        async with self._lock(new.issuer_id):
            self._install_locked(new)

    def _install_locked(self, new: _Generation) -> None:
        old = self._issuers.get(new.issuer_id)
        self._issuers[new.issuer_id] = new
        if old is not None:
            self._retire(old)
        log.info(
            "issuer %s now served by generation %d (%s)", new.issuer_id, new.number, new.type_name
        )

    async def rebuild(
        self,
        issuer_id: str,
        config: Mapping[str, Any],
        *,
        type_name: str | None = None,
        force: bool = False,
    ) -> bool:
        """Hot-swap an issuer to a new config (creating it if absent).

        Returns False when the config (and type) equal the current ones and ``force`` is
        not set; True when a new generation now serves. On any failure the current
        generation keeps serving and the error is raised. (:meth:`prepare` then
        :meth:`PreparedIssuer.install`.)
        """
        async with self._lock(issuer_id):
            new = await self._prepare_locked(issuer_id, config, type_name, force)
            if new is not None:
                self._install_locked(new)
        return new is not None

    async def remove(self, issuer_id: str) -> None:
        """Stop serving an issuer; its connector is closed once its calls drain."""
        async with self._lock(issuer_id):
            self._retire(self._current(issuer_id))
            del self._issuers[issuer_id]

    def _retire(self, gen: _Generation) -> None:
        gen.retired = True
        task = asyncio.get_running_loop().create_task(self._close_when_idle(gen))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_when_idle(self, gen: _Generation) -> None:
        try:
            await asyncio.wait_for(gen.idle.wait(), self._drain_timeout)
        except TimeoutError:
            log.warning(
                "issuer %s generation %d still had %d call(s) after %.1fs; closing it",
                gen.issuer_id,
                gen.number,
                gen.active,
                self._drain_timeout,
            )
        await self._close(gen)

    async def _close(self, gen: _Generation) -> None:
        if gen.closed:
            return
        gen.closed = True
        try:
            await gen.connector.close()
        except Exception:
            # A failing close must not break the host; it is logged, not raised.
            log.exception("closing issuer %s generation %d failed", gen.issuer_id, gen.number)

    async def wait_retired(self) -> None:
        """Wait until every retired generation has drained and been closed."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring))

    async def aclose(self) -> None:
        """Close every issuer (waiting for drains, bounded) and retired generation."""
        for issuer_id in list(self._issuers):
            await self.remove(issuer_id)
        await self.wait_retired()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- calls -------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, issuer_id: str) -> AsyncIterator[IssuerPort]:
        """The current connector of ``issuer_id``, held for the duration of the block."""
        gen = self._current(issuer_id)
        gen.active += 1
        gen.idle.clear()
        try:
            with error_context(issuer_id, gen.type_name):
                yield gen.connector
        finally:
            gen.active -= 1
            if gen.active == 0:
                gen.idle.set()

    async def issue(self, issuer_id: str, request: CertificateRequest) -> IssuedCertificate:
        """Issue through the issuer, applying profile policy before and after."""
        request = cap_request(request)
        requested_at = dt.datetime.now(dt.UTC)
        async with self.lease(issuer_id) as connector:
            issued = await connector.issue(request)
            verify_issued(request, issued, requested_at=requested_at)
        return issued

    async def revoke(
        self,
        issuer_id: str,
        serial: int,
        reason: RevocationReason = RevocationReason.UNSPECIFIED,
    ) -> Revocation:
        """Revoke through the issuer. Raises InvalidRequestError for removeFromCRL, which
        only delta CRLs use to lift a hold: it cannot revoke, so no connector sees it."""
        if reason is RevocationReason.REMOVE_FROM_CRL:
            raise InvalidRequestError(
                "removeFromCRL cannot revoke a certificate (it lifts a certificateHold in "
                "delta CRLs)",
                hint="choose another reason, e.g. unspecified or superseded",
                issuer_id=issuer_id,
            )
        async with self.lease(issuer_id) as connector:
            return await connector.revoke(serial, reason)

    async def ca_chain(self, issuer_id: str) -> tuple[x509.Certificate, ...]:
        async with self.lease(issuer_id) as connector:
            return await connector.ca_chain()

    async def check(self, issuer_id: str) -> HealthReport:
        async with self.lease(issuer_id) as connector:
            return await connector.check()

    async def crl(self, issuer_id: str) -> bytes:
        async with self.lease(issuer_id) as connector:
            return await connector.crl()

    async def ocsp(self, issuer_id: str, request_der: bytes) -> bytes:
        async with self.lease(issuer_id) as connector:
            return await connector.ocsp(request_der)

    async def status(self, issuer_id: str, serial: int) -> CertificateStatus:
        async with self.lease(issuer_id) as connector:
            return await connector.status(serial)

    async def renewal_info(self, issuer_id: str, certificate: x509.Certificate) -> RenewalWindow:
        """When the CA suggests renewing ``certificate`` (capability ``renewal_info``)."""
        async with self.lease(issuer_id) as connector:
            if getattr(connector, "renewal_info", None) is None:
                # A connector written before renewal_info joined the port.
                raise UnsupportedCapabilityError("renewal_info")
            return await connector.renewal_info(certificate)


#: Files larger than this are not fingerprinted (a key path at /dev/zero must not hang).
_MAX_FINGERPRINTED = 16 << 20


def _hash_files(paths: Mapping[str, Any]) -> dict[str, str | None]:
    """SHA-256 of each file; None for one that cannot be read, is no regular file or is
    too large (the build reports why)."""
    result: dict[str, str | None] = {}
    for key, path in paths.items():
        try:
            result[key] = hashlib.sha256(read_regular_file(path, _MAX_FINGERPRINTED)).hexdigest()
        except (OSError, ValueError):  # a FIFO, a device, too large, unreadable
            result[key] = None
    return result
