"""The issuer service: stored configs, live connectors, the ledger and OCSP responders.

It is the one place that keeps the store and the registry in step:

* At start every stored issuer is built; one that fails to build is reported (``error``
  in the API) and not served, the others are.
* ``put`` validates, builds the new connector (and the OCSP responder connector, if
  any) without serving it (:meth:`Registry.prepare`), writes the store guarded by the
  revision it read (a concurrent writer gives RevisionConflictError, 409), and only then
  serves the new connectors. If building or the write fails, the new connectors are
  closed unused and the store is unchanged: the old connectors, never touched, keep
  serving. Puts of one issuer are serialised.
* A stored issuer whose secrets do not decrypt is reported (``error``), not served; the
  others are.
* Before a new connector serves, it is vetted: the ``check()`` lines its type declares
  as judging the config (``ConnectorType.config_checks``, e.g. step-ca's
  ``duration_limits``) must not fail, and a new OCSP responder must obtain its
  certificate. A refusal is a ConfigError (422) and the old connectors keep serving.
* Files a config names are part of its identity (``ConnectorType.file_fields``, ADR
  0022): a PUT of an unchanged config rebuilds when such a file changed in place;
  :meth:`IssuerService.rebuild` forces a rebuild; :meth:`IssuerService.reload` (SIGHUP)
  rebuilds every issuer whose files changed.
* A masked secret (``********``) keeps the stored one only while the fields that decide
  what it unlocks (``ConnectorType.secret_scope``) are unchanged.
* Issuance and revocation go through the registry and are recorded in the ledger, which
  is what OCSP answers from for issuers whose CA has no OCSP of its own (step-ca).
* Profiles are stored by name (``_profiles``) and read from the store on every issuance
  (one primary-key read: a profile written by another process applies at once). The
  request's profile name must be stored, except ``default``; the stored profile sets the
  max TTL the registry caps by, refuses disallowed key types before the CA is asked, and
  refuses a leaf with EKUs it does not allow before it is recorded or returned.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from cryptography import x509

from certctl_core.domain import (
    CertificateRequest,
    CertificateStatus,
    IssuedCertificate,
    Revocation,
    RevocationReason,
    Secret,
)
from certctl_core.errors import (
    CertctlError,
    ConfigError,
    ConfigProblem,
    InvalidRequestError,
    NotFoundError,
    TransientError,
    UnknownIssuerError,
)
from certctl_core.host import PluginHost, PreparedIssuer, Registry
from certctl_core.revocation import build_ocsp_request, ocsp_error_response
from certctl_host.responder import DelegatedResponder
from certctl_host.server._ocsp_cache import (
    CRL_RECHECK_SECONDS,
    CachedAnswer,
    OCSPCache,
    files_token,
)
from certctl_host.server._profiles import (
    DEFAULT_PROFILE,
    PROFILE_NAME,
    StoredProfile,
    UnknownProfileError,
)
from certctl_host.storage import (
    MASK,
    IssuerRecord,
    ProfileRecord,
    Store,
    mask_config,
    unmask_config,
)

__all__ = ["ISSUER_ID", "IssuerService", "IssuerView"]

log = logging.getLogger(__name__)

#: Issuer ids: letters, digits, dot, dash, underscore; 1-64 characters.
ISSUER_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: no trailing newline
_RESPONDER_SUFFIX = "/ocsp-responder"  # "/" never appears in an issuer id
_PUT_KEYS = frozenset({"type", "config", "ocsp_responder", "replace_ca"})
_PROFILE_LOCK = "profile/"  # "/" never appears in an issuer id: no clash with issuer locks


@attrs.frozen
class IssuerView:
    """An issuer as the API shows it: config with secrets masked."""

    record: IssuerRecord
    masked_config: Mapping[str, Any]
    masked_responder: Mapping[str, Any] | None
    serving: bool
    generation: int | None
    capabilities: tuple[str, ...]
    error: str | None
    ocsp: str  # "connector", "delegated", or "none"
    ocsp_error: str | None = None
    #: What every replica serves of this issuer (PostgreSQL: ``_replicas``); None: one server.
    replicas: tuple[Mapping[str, Any], ...] | None = None

    def as_json(self) -> dict[str, Any]:
        r = self.record
        shown: dict[str, Any] = {} if self.replicas is None else {"replicas": list(self.replicas)}
        return {
            "id": r.issuer_id,
            "type": r.type_name,
            "config": dict(self.masked_config),
            "ocsp_responder": (
                None if self.masked_responder is None else {"config": dict(self.masked_responder)}
            ),
            "revision": r.revision,
            "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            "status": {
                "serving": self.serving,
                "generation": self.generation,
                "capabilities": list(self.capabilities),
                "error": self.error,
                "ocsp": self.ocsp,
                "ocsp_error": self.ocsp_error,
            },
            **shown,
        }


def _prefixed(exc: ConfigError, prefix: str) -> list[ConfigProblem]:
    return [
        ConfigProblem(f"{prefix}.{p.field}", p.message, p.hint)
        if not p.field.startswith(prefix)
        else p
        for p in exc.problems
    ]


class IssuerService:
    """Owns the registry and the delegated OCSP responders; reads and writes the store."""

    def __init__(
        self,
        store: Store,
        plugins: PluginHost,
        *,
        drain_timeout: float = 30.0,
        shared_store: bool = False,
    ):
        self.store = store
        #: True when other processes (replicas) serve the same store: a connector whose
        #: config keeps its CA state in this process is refused (``runs_in_one_process``).
        self.shared_store = shared_store
        self.plugins = plugins
        self.registry = Registry(plugins, drain_timeout=drain_timeout)
        self._errors: dict[str, str] = {}
        #: issuer id -> revision of the stored record the live connectors were built from
        self._applied: dict[str, int] = {}
        #: issuer id -> (stored revision whose build failed here, monotonic time of the
        #: next try, pause): retried by sync() with backoff until a build succeeds
        self._failed: dict[str, tuple[int, float, float]] = {}
        self._seen_revision = -1
        self._responders: dict[str, DelegatedResponder] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: issuer id -> (CRL DER, its entries by serial), for CAs that publish a CRL
        self._crl_index: dict[
            str, tuple[bytes, Mapping[int, tuple[dt.datetime, RevocationReason | None]]]
        ] = {}
        #: Set by the replica coordinator (``_replicas``, PostgreSQL): raises when this
        #: replica cannot confirm it serves the stored revision; and every replica's state.
        self.issue_guard: Callable[[str], None] | None = None
        #: issuer ids -> every replica's report for each, from one read of the reports
        self.replica_report: (
            Callable[[builtins.list[str]], Awaitable[dict[str, builtins.list[dict[str, Any]]]]]
            | None
        ) = None
        #: pre-signed OCSP answers to requests without a nonce (ADR 0026)
        self.ocsp_cache = OCSPCache()

    def revocation_changed(self, issuer_id: str, serial: int | None = None) -> None:
        """THE entry point for a change of revocation state (a revocation here or on
        another replica; ``serial=None``: anything of the issuer, e.g. its CA replaced).
        Cached OCSP answers for it are dropped before this returns."""
        self.ocsp_cache.invalidate(issuer_id, serial)

    def store_token(self) -> object:
        """Changes whenever any process writes the store (its files' times and sizes)."""
        return files_token(getattr(self.store, "path", None))

    async def ocsp_answer_current(self, issuer_id: str, answer: CachedAnswer) -> bool:
        """Whether a pre-signed OCSP answer may still be served (ADR 0026): the store was
        not written since (by any process), and a connector that answers OCSP itself
        still reports the status the answer states."""
        cache = self.ocsp_cache
        if not self._replica_current():
            # A replica that cannot confirm the shared store may have missed another
            # replica's revocation notice: nothing cached is served until it can.
            cache.invalidate_all()
            return False
        if self.store_token() != answer.token:
            # The store was written since the answer's status was read (by us, the CLI,
            # another server): read it again.
            cache.invalidate(issuer_id, answer.serial)
            return False
        try:
            async with self.registry.lease(issuer_id) as connector:
                if not connector.capabilities.ocsp:
                    # Delegated: answered from the store (checked above) and, where the CA
                    # publishes a CRL, from that CRL too: a revocation made at the CA
                    # (``step ca revoke``) must show as soon as the CRL is read again.
                    if not connector.capabilities.crl:
                        return True
                    return time.time() - answer.signed_at < CRL_RECHECK_SECONDS
                if not connector.capabilities.status:
                    return False
                status = await connector.status(answer.serial)
        except CertctlError:
            return False
        if status.state == answer.state:
            return True
        cache.invalidate(issuer_id, answer.serial)
        return False

    def _replica_current(self) -> bool:
        """False while this replica cannot confirm it follows the shared store (the
        staleness bound of ADR 0023); always True on a store no other process serves."""
        if self.issue_guard is None:
            return True
        try:
            self.issue_guard("")
        except TransientError:
            return False
        return True

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Build every stored issuer; failures are reported per issuer, not raised."""
        await self.sync()
        log.info("serving %d issuer(s)", len(self.registry.issuers()))

    async def remote_change(self, issuer_id: str, kind: str) -> None:
        """Another replica changed something (the one entry point for what it learns):
        ``config`` (an issuer or profile write: the live connectors follow the store) or
        ``revocation`` (the shared ledger changed: its cached OCSP answers are dropped)."""
        if kind == "config":
            await self.sync()
        else:
            self.revocation_changed(issuer_id)
            log.debug("issuer %s: %s recorded by another replica", issuer_id, kind)

    @property
    def seen_revision(self) -> int:
        """The store revision the live connectors were last brought in line with."""
        return self._seen_revision

    def serving_state(self) -> dict[str, dict[str, Any]]:
        """issuer id -> the revision applied, generation served and error, as reported to
        the other replicas."""
        live = {i.issuer_id: i.generation for i in self.registry.issuers()}
        revisions = {**self._applied, **{k: v[0] for k, v in self._failed.items()}}
        return {
            issuer_id: {
                "revision": revision,
                "generation": live.get(issuer_id),
                "error": self._errors.get(issuer_id),
            }
            for issuer_id, revision in revisions.items()
        }

    async def sync(self, *, force: bool = False) -> int:
        """Bring the live connectors in line with the store: build issuers written by
        another process (a replica, the CLI) and drop removed ones. Cheap when nothing
        changed (one read of the store's revision); ``force`` reads every record (after a
        reconnect, when notifications may have been lost). Returns how many changed."""
        if force:
            # After a reconnect revocation notices may have been lost too.
            self.ocsp_cache.invalidate_all()
        revision = await self.store.config_revision()
        retry_due = any(at <= time.monotonic() for _, at, _ in self._failed.values())
        if revision == self._seen_revision and not force and not retry_due:
            return 0
        changed = 0
        records = {r.issuer_id: r for r in await self.store.list_issuers()}
        for issuer_id, record in records.items():
            # Revisions only grow: what a put of this process applied meanwhile is newer.
            if self._applied.get(issuer_id, 0) >= record.revision:
                continue
            failed = self._failed.get(issuer_id)
            if (
                not force
                and failed is not None
                and failed[0] == record.revision
                and failed[1] > time.monotonic()
            ):
                continue  # its build failed here: tried again after a pause
            async with self._lock(issuer_id):
                if self._applied.get(issuer_id, 0) >= record.revision:
                    continue
                changed += 1
                if record.error is not None:
                    # Not built; a connector built from an earlier readable revision keeps
                    # serving, as when a build fails.
                    self._errors[issuer_id] = record.error
                    self._applied[issuer_id] = record.revision
                    continue
                try:
                    await self._build(record)
                except CertctlError as exc:
                    # Not applied: a later round builds it again (a file that appears, a
                    # CA back up), pausing 1 s, 2 s, ... up to 60 s between attempts.
                    self._errors[issuer_id] = str(exc)
                    again = failed is not None and failed[0] == record.revision
                    pause = min(failed[2] * 2, 60.0) if failed is not None and again else 1.0
                    self._failed[issuer_id] = (record.revision, time.monotonic() + pause, pause)
                    log.error("issuer %s is not served: %s", issuer_id, exc)  # noqa: TRY400
                    continue
                self._errors.pop(issuer_id, None)
                self._failed.pop(issuer_id, None)
                self._applied[issuer_id] = record.revision
        for issuer_id in (set(self._applied) | set(self._failed)) - set(records):
            async with self._lock(issuer_id):
                if await self.store.get_issuer(issuer_id) is None:  # not put meanwhile
                    changed += 1
                    await self._drop(issuer_id)
        self._seen_revision = revision
        return changed

    async def _drop(self, issuer_id: str) -> None:
        live = {i.issuer_id for i in self.registry.issuers()}
        for name in (issuer_id, issuer_id + _RESPONDER_SUFFIX):
            if name in live:
                await self.registry.remove(name)
        responder = self._responders.pop(issuer_id, None)
        if responder is not None:
            await responder.aclose()
        self._applied.pop(issuer_id, None)
        self._failed.pop(issuer_id, None)
        self._errors.pop(issuer_id, None)
        self.revocation_changed(issuer_id)
        log.info("issuer %s removed from the store; no longer served", issuer_id)

    async def _build(self, record: IssuerRecord) -> None:
        """Build the connectors of a stored record and serve them (both or neither)."""
        prepared = await self._prepare(record)
        await self._install(record, prepared)

    async def _prepare(self, record: IssuerRecord, *, force: bool = False) -> list[PreparedIssuer]:
        """Build the issuer's connector and its OCSP responder connector, serving neither.
        Raises ConfigError with fields prefixed as in the PUT body."""
        issuer_id = record.issuer_id
        try:
            main = await self.registry.prepare(
                issuer_id, record.config, type_name=record.type_name, force=force
            )
        except ConfigError as exc:
            raise ConfigError(
                _prefixed(exc, "config"), issuer_id=issuer_id, connector=record.type_name
            ) from None
        if record.ocsp_responder is None:
            return [main]
        try:
            responder = await self.registry.prepare(
                issuer_id + _RESPONDER_SUFFIX,
                {**record.config, **record.ocsp_responder},
                type_name=record.type_name,
                force=force,
            )
        except BaseException as exc:
            await main.discard()
            if isinstance(exc, ConfigError):
                raise ConfigError(
                    _prefixed(exc, "ocsp_responder.config"),
                    issuer_id=issuer_id,
                    connector=record.type_name,
                ) from None
            raise
        return [main, responder]

    async def _vet(self, record: IssuerRecord, prepared: list[PreparedIssuer]) -> None:
        """Refuse new connectors whose config the CA shows wrong, before they serve.

        * the ``check()`` lines the type declares as judging the config must not fail;
        * a new OCSP responder must obtain its certificate now (a responder that cannot
          would turn OCSP ``unauthorized`` at once).

        Raises ConfigError (fields prefixed as in the PUT body); the caller discards.
        """
        connector_type = self.registry.types.get(record.type_name)
        if connector_type is None:
            return
        problems: list[ConfigProblem] = []
        for handle, prefix in zip(prepared, ("config", "ocsp_responder.config"), strict=False):
            if not handle.changed or not connector_type.config_checks:
                continue
            report = await handle.check()
            for line in report.checks:
                field = connector_type.config_checks.get(line.name)
                if field is not None and line.ok is False:
                    problems.append(
                        ConfigProblem(
                            f"{prefix}.{field}",
                            f"the CA refuses it ({line.name}): {line.detail}",
                            "change it to what the CA allows, or change the CA first",
                        )
                    )
        if len(prepared) == 2 and any(h.changed for h in prepared) and not problems:
            main, responder = prepared
            error = await self._trial_responder(record.issuer_id, main, responder)
            if error is not None:
                problems.append(
                    ConfigProblem(
                        "ocsp_responder",
                        f"no OCSP responder certificate could be obtained: {error}",
                        "check the responder provisioner (its name, and a template that sets "
                        "the OCSPSigning EKU); the current responder keeps answering",
                    )
                )
        if problems:
            raise ConfigError(problems, issuer_id=record.issuer_id, connector=record.type_name)

    async def _trial_responder(
        self, issuer_id: str, main: PreparedIssuer, responder: PreparedIssuer
    ) -> str | None:
        """Obtain a responder certificate with the new connectors; the reason if none."""
        trial = DelegatedResponder(
            issuer_id,
            issue=(
                responder.issue
                if responder.changed
                else functools.partial(self.registry.issue, issuer_id + _RESPONDER_SUFFIX)
            ),
            issuer_chain=(
                main.ca_chain
                if main.changed
                else functools.partial(self.registry.ca_chain, issuer_id)
            ),
        )
        try:
            obtained = await trial.responder()
            return None if obtained is not None else (trial.last_error or "unknown reason")
        finally:
            await trial.aclose()

    async def _install(self, record: IssuerRecord, prepared: list[PreparedIssuer]) -> None:
        """Serve what :meth:`_prepare` built; drop a responder the record no longer has."""
        for handle in prepared:
            await handle.install()
        self.revocation_changed(record.issuer_id)  # another CA or responder may answer now
        responder_id = record.issuer_id + _RESPONDER_SUFFIX
        if record.ocsp_responder is not None:
            self._new_responder(record.issuer_id)
        elif self._live(responder_id):
            await self.registry.remove(responder_id)
            old = self._responders.pop(record.issuer_id, None)
            if old is not None:
                await old.aclose()

    def _new_responder(self, issuer_id: str) -> None:
        old = self._responders.pop(issuer_id, None)
        if old is not None:
            # Closed in the background: a request may still be answering with it.
            task = asyncio.get_running_loop().create_task(old.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._responders[issuer_id] = DelegatedResponder(
            issuer_id,
            issue=functools.partial(self.registry.issue, issuer_id + _RESPONDER_SUFFIX),
            issuer_chain=functools.partial(self.registry.ca_chain, issuer_id),
        )

    async def aclose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing)
        for responder in self._responders.values():
            await responder.aclose()
        self._responders.clear()
        await self.registry.aclose()

    # -- reading -------------------------------------------------------------------------

    def secret_fields(self, type_name: str) -> frozenset[str]:
        connector_type = self.registry.types.get(type_name)
        return connector_type.secret_fields if connector_type is not None else frozenset()

    async def _view(
        self,
        record: IssuerRecord,
        reports: Mapping[str, builtins.list[dict[str, Any]]] | None = None,
    ) -> IssuerView:
        """``reports``: every replica's reports, read once for a list of issuers."""
        if reports is None and self.replica_report is not None:
            reports = await self.replica_report([record.issuer_id])
        secret = self.secret_fields(record.type_name)
        serving = self._live(record.issuer_id)
        generation = None
        capabilities: tuple[str, ...] = ()
        if serving:
            generation = self.registry.info(record.issuer_id).generation
            async with self.registry.lease(record.issuer_id) as connector:
                capabilities = connector.capabilities.names()
        ocsp = "none"
        ocsp_error = None
        if "ocsp" in capabilities:
            ocsp = "connector"
        elif record.issuer_id in self._responders:
            ocsp = "delegated"
            ocsp_error = self._responders[record.issuer_id].last_error
        return IssuerView(
            record,
            mask_config(record.config, secret),
            None if record.ocsp_responder is None else mask_config(record.ocsp_responder, secret),
            serving,
            generation,
            capabilities,
            self._errors.get(record.issuer_id),
            ocsp,
            ocsp_error,
            None if reports is None else tuple(reports.get(record.issuer_id, ())),
        )

    async def list(self) -> list[IssuerView]:
        records = await self.store.list_issuers()
        reports = None
        if self.replica_report is not None:  # one read for all of them
            reports = await self.replica_report([r.issuer_id for r in records])
        return [await self._view(r, reports) for r in records]

    async def get(self, issuer_id: str) -> IssuerView:
        record = await self.store.get_issuer(issuer_id)
        if record is None:
            raise UnknownIssuerError(f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id)
        return await self._view(record)

    # -- writing -------------------------------------------------------------------------

    def _parse_put(
        self, issuer_id: str, body: Mapping[str, Any]
    ) -> tuple[str, Any, Any, builtins.list[ConfigProblem]]:
        """The type, config and responder config of a PUT body, and the shape problems
        that do not stop the config from being built (unknown fields): those are
        reported together with the config's own problems. Raises ConfigError at once
        when nothing can be built (no type, no config object, a bad id)."""
        problems: list[ConfigProblem] = []
        soft: list[ConfigProblem] = []
        if not ISSUER_ID.match(issuer_id):
            problems.append(
                ConfigProblem(
                    "id",
                    "must be 1-64 letters, digits, '.', '-' or '_', starting with a letter "
                    "or digit",
                )
            )
        for key in sorted(set(body) - _PUT_KEYS):
            soft.append(
                ConfigProblem(
                    key, "unknown field", "fields: type, config, ocsp_responder, replace_ca"
                )
            )
        if body.get("replace_ca", False) not in (True, False):
            soft.append(ConfigProblem("replace_ca", "must be true or false"))
        type_name = body.get("type")
        if not isinstance(type_name, str) or not type_name:
            problems.append(ConfigProblem("type", "is required: the connector type"))
            type_name = ""
        elif type_name not in self.registry.types:
            known = ", ".join(sorted(self.registry.types)) or "none"
            problems.append(
                ConfigProblem(
                    "type", f"no installed plugin provides {type_name!r}", f"installed: {known}"
                )
            )
        config = body.get("config")
        if not isinstance(config, Mapping):
            problems.append(ConfigProblem("config", "is required: an object of settings"))
        responder = body.get("ocsp_responder")
        responder_config = None
        if responder is not None:
            if not isinstance(responder, Mapping) or not isinstance(
                responder.get("config"), Mapping
            ):
                problems.append(
                    ConfigProblem(
                        "ocsp_responder",
                        "must be null or an object with a 'config' object",
                        'e.g. {"config": {"provisioner_name": "ocsp-responder"}}',
                    )
                )
            else:
                responder_config = responder["config"]
                extra = sorted(set(responder) - {"config"})
                if extra:
                    soft.append(ConfigProblem("ocsp_responder", f"unknown fields {extra}"))
                connector_type = self.registry.types.get(type_name)
                if connector_type is not None and connector_type.capabilities.ocsp:
                    problems.append(
                        ConfigProblem(
                            "ocsp_responder",
                            f"connector type {type_name!r} answers OCSP itself",
                            "remove ocsp_responder",
                        )
                    )
        if problems:
            raise ConfigError(problems + soft, issuer_id=issuer_id)
        return type_name, config, responder_config, soft

    def _scope_problems(
        self,
        type_name: str,
        stored: IssuerRecord,
        config: Mapping[str, Any],
        responder_config: Mapping[str, Any] | None,
    ) -> builtins.list[ConfigProblem]:
        """A masked secret keeps the stored one only while what it unlocks is unchanged:
        a PUT that changes a ``secret_scope`` field must send the secret again."""
        connector_type = self.registry.types.get(type_name)
        if connector_type is None or not connector_type.secret_scope:
            return []
        scope = connector_type.secret_scope

        def masked(cfg: Mapping[str, Any] | None) -> set[str]:
            found = set()
            for name in connector_type.secret_fields:
                value = (cfg or {}).get(name)
                if isinstance(value, Secret):
                    value = value.reveal()
                if value == MASK:
                    found.add(name)
            return found

        def changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
            return sorted(k for k in scope if old.get(k) != new.get(k))

        problems: builtins.list[ConfigProblem] = []
        main_masked = masked(config)
        moved = changed(stored.config, config)
        for name in sorted(main_masked) if moved else ():
            problems.append(_resend("config", name, moved))
        if responder_config is not None:
            old_effective = {**stored.config, **(stored.ocsp_responder or {})}
            new_effective = {**config, **responder_config}
            # The responder uses its own secret, else the issuer's (maybe masked) one.
            used = masked(responder_config) | {n for n in main_masked if n not in responder_config}
            moved = changed(old_effective, new_effective)
            reported = {p.field for p in problems}
            for name in sorted(used) if moved else ():
                prefix = "ocsp_responder.config" if name in responder_config else "config"
                if f"{prefix}.{name}" not in reported:
                    problems.append(_resend(prefix, name, moved))
        return problems

    def _identity_problems(
        self, type_name: str, stored: IssuerRecord, config: Mapping[str, Any]
    ) -> builtins.list[ConfigProblem]:
        """A PUT must not silently point an issuer at another CA (``identity_fields``):
        the certificates it issued would be orphaned."""
        connector_type = self.registry.types.get(type_name)
        fields = connector_type.identity_fields if connector_type is not None else frozenset()
        return [
            ConfigProblem(
                f"config.{name}",
                "changes which CA this issuer drives: the certificates it issued could no "
                "longer be revoked or answered for",
                'PUT a new issuer id for the new CA, or send "replace_ca": true to replace '
                "this one knowingly",
            )
            for name in sorted(fields)
            if stored.config.get(name) != config.get(name)
        ]

    def _process_problems(
        self, type_name: str, config: Mapping[str, Any]
    ) -> builtins.list[ConfigProblem]:
        """On a shared store every replica builds every issuer: a config whose CA state
        lives in one process (files, a local ledger) would fork into one CA per replica."""
        connector_type = self.registry.types.get(type_name)
        if not self.shared_store or connector_type is None:
            return []
        if not connector_type.runs_in_one_process(config):
            return []
        shared = sorted(connector_type.shared_state_fields)
        return [
            ConfigProblem(
                f"config.{shared[0]}" if shared else "type",
                f"a {type_name} issuer without it keeps its CA state in each replica's own "
                "process: every replica on this database would run a separate CA (serials, "
                "revocations, CRLs)",
                f"set config.{shared[0]} to share its state (docs/deploying.md)"
                if shared
                else "run this issuer on a server without --database-url",
            )
        ]

    def _lock(self, issuer_id: str) -> asyncio.Lock:
        return self._locks.setdefault(issuer_id, asyncio.Lock())

    async def put(self, issuer_id: str, body: Mapping[str, Any]) -> tuple[IssuerView, bool]:
        """Create or replace an issuer; returns its view and whether it was created.

        Raises ConfigError (every problem, fields prefixed ``config.`` or
        ``ocsp_responder.config.``); on any failure the previous issuer keeps serving.
        """
        type_name, config, responder_config, soft = self._parse_put(issuer_id, body)
        secret = self.secret_fields(type_name)
        async with self._lock(issuer_id):
            stored = await self.store.get_issuer(issuer_id)
            # A stored row whose secrets do not decrypt keeps no secret to fall back on.
            same_type = (
                stored is not None and stored.type_name == type_name and stored.error is None
            )
            merged, problems = unmask_config(
                config, stored.config if same_type and stored else None, secret
            )
            responder_merged = None
            if responder_config is not None:
                responder_merged, more = unmask_config(
                    responder_config,
                    stored.ocsp_responder if same_type and stored else None,
                    secret,
                    prefix="ocsp_responder.config",
                )
                problems += more
            if same_type and stored is not None:
                problems += self._scope_problems(type_name, stored, config, responder_config)
                if body.get("replace_ca") is not True:
                    problems += self._identity_problems(type_name, stored, merged)
            problems += self._process_problems(type_name, merged)
            record = IssuerRecord(issuer_id, type_name, merged, responder_merged)
            problems = soft + problems
            if problems:
                # Build anyway (never served) to report the config's own problems too.
                problems += await self._build_problems(record, {p.field for p in problems})
                raise ConfigError(problems, issuer_id=issuer_id, connector=type_name)
            saved = await self._swap(stored, record, secret)
            self._errors.pop(issuer_id, None)
            self._failed.pop(issuer_id, None)
            self._applied[issuer_id] = saved.revision
            log.info("issuer %s (%s) stored at revision %d", issuer_id, type_name, saved.revision)
            return await self._view(saved), stored is None

    async def _build_problems(
        self, record: IssuerRecord, known: set[str]
    ) -> builtins.list[ConfigProblem]:
        """The config problems building ``record`` reports (nothing is served or stored),
        leaving out fields already reported."""
        try:
            prepared = await self._prepare(record, force=True)
        except ConfigError as exc:
            return [p for p in exc.problems if p.field not in known]
        except CertctlError:
            return []
        for handle in prepared:
            await handle.discard()
        return []

    async def rebuild(self, issuer_id: str) -> IssuerView:
        """Build new connectors from the stored config (files re-read) and serve them.

        Raises UnknownIssuerError for an unknown id, and what building or vetting raises
        (the current connectors then keep serving)."""
        if not ISSUER_ID.match(issuer_id):
            raise UnknownIssuerError(f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id)
        async with self._lock(issuer_id):
            record = await self.store.get_issuer(issuer_id)
            if record is None:
                raise UnknownIssuerError(
                    f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id
                )
            if record.error is not None:
                raise TransientError(
                    f"issuer {issuer_id!r}: its stored config cannot be read: {record.error}",
                    issuer_id=issuer_id,
                    retry_after=30,
                    hint="PUT its configuration again",
                )
            await self._apply(record, force=True)
            log.info(
                "issuer %s rebuilt on request (generation %d)",
                issuer_id,
                self.registry.info(issuer_id).generation,
            )
            return await self._view(record)

    async def _apply(self, record: IssuerRecord, *, force: bool) -> bool:
        """Prepare, vet and serve new connectors for a stored record; False when nothing
        changed. On failure nothing changes and the error is raised."""
        prepared = await self._prepare(record, force=force)
        if not any(handle.changed for handle in prepared):
            return False
        try:
            await self._vet(record, prepared)
        except BaseException:
            for handle in prepared:
                await handle.discard()
            raise
        await self._install(record, prepared)
        self._errors.pop(record.issuer_id, None)
        self._failed.pop(record.issuer_id, None)
        self._applied[record.issuer_id] = record.revision
        return True

    async def reload(self) -> dict[str, str]:
        """Re-read the store and rebuild every issuer whose files changed (SIGHUP).

        Returns issuer id -> outcome (``rebuilt``, ``unchanged``, ``failed: ...``); each
        is logged. Errors never hold secrets (the connectors' contract)."""
        await self.sync()
        outcomes: dict[str, str] = {}
        for record in await self.store.list_issuers():
            issuer_id = record.issuer_id
            if record.error is not None:
                outcomes[issuer_id] = f"failed: {record.error}"
                continue
            async with self._lock(issuer_id):
                try:
                    changed = await self._apply(record, force=False)
                except CertctlError as exc:
                    outcomes[issuer_id] = f"failed: {exc}"
                    if not self._live(issuer_id):
                        self._errors[issuer_id] = str(exc)
                else:
                    outcomes[issuer_id] = "rebuilt" if changed else "unchanged"
            if outcomes[issuer_id].startswith("failed"):
                log.warning("reload: issuer %s %s", issuer_id, outcomes[issuer_id])
            else:
                log.info("reload: issuer %s %s", issuer_id, outcomes[issuer_id])
        return outcomes

    async def seed_from_env(self, environ: Mapping[str, str]) -> builtins.list[str]:
        """On an empty store, create the issuer each connector type reads from the
        environment (``ConnectorType.env_seed``), as a PUT would: validated, built,
        secrets sealed. Returns the ids created. A failure is logged, not raised, and the
        other types are still seeded."""
        created: builtins.list[str] = []
        if await self.store.list_issuers():
            return created
        for type_name, connector_type in sorted(self.registry.types.items()):
            if connector_type.env_seed is None:
                continue
            try:
                seed = connector_type.env_seed(environ)
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not stop the server
                log.error(  # noqa: TRY400 - no traceback: it could show secrets
                    "connector type %s: reading the environment failed: %s",
                    type_name,
                    type(exc).__name__,
                )
                continue
            if seed is None:
                continue
            issuer_id, config = seed
            try:
                await self.put(issuer_id, {"type": type_name, "config": dict(config)})
            except CertctlError as exc:
                log.error(  # noqa: TRY400 - the message is the report
                    "issuer %s (%s) from the environment was not created: %s",
                    issuer_id,
                    type_name,
                    exc,
                )
                continue
            shown = mask_config(config, connector_type.secret_fields)
            log.info("issuer %s (%s) created from the environment: %s", issuer_id, type_name, shown)
            created.append(issuer_id)
        return created

    async def _swap(
        self, stored: IssuerRecord | None, record: IssuerRecord, secret: frozenset[str]
    ) -> IssuerRecord:
        """Two-phase: build the new connectors without serving them, write the store
        (guarded by the revision read), then serve them. If the write fails the new
        connectors are closed unused and the old ones, never touched, keep serving."""
        prepared = await self._prepare(record)
        try:
            await self._vet(record, prepared)
        except BaseException:
            for handle in prepared:
                await handle.discard()
            raise
        expected = stored.revision if stored is not None else 0
        log.debug(
            "issuer %s: new connector built, not serving yet; writing the store "
            "(expected revision %d)",
            record.issuer_id,
            expected,
        )
        try:
            saved = await self.store.put_issuer(
                record,
                secret_fields=secret,
                expected_revision=expected,
            )
        except BaseException:
            for handle in prepared:
                await handle.discard()
            raise
        await self._install(record, prepared)
        return saved

    # -- certificates --------------------------------------------------------------------

    def _live(self, issuer_id: str) -> bool:
        return any(i.issuer_id == issuer_id for i in self.registry.issuers())

    def _served(self, issuer_id: str) -> None:
        if not ISSUER_ID.match(issuer_id):
            raise UnknownIssuerError(f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id)
        if issuer_id in self._errors and not self._live(issuer_id):
            raise TransientError(
                f"issuer {issuer_id!r} is configured but could not be built: "
                f"{self._errors[issuer_id]}",
                issuer_id=issuer_id,
                retry_after=30,
                hint="fix its configuration with PUT /api/v1/issuers/{id}",
            )

    async def issue(self, issuer_id: str, request: CertificateRequest) -> IssuedCertificate:
        self._served(issuer_id)
        if self.issue_guard is not None:
            self.issue_guard(issuer_id)
        if not self._live(issuer_id):  # an unknown issuer is a 404 before any profile 422
            raise UnknownIssuerError(f"no issuer {issuer_id!r} is configured", issuer_id=issuer_id)
        profile = await self._stored_profile(issuer_id, request.profile.name)
        if profile is not None:
            request = profile.apply(request, issuer_id=issuer_id)
        if self.issue_guard is not None:
            self.issue_guard(issuer_id)  # again: the profile read may have taken a while
        issued = await self.registry.issue(issuer_id, request)
        if profile is not None:
            profile.check_issued(issued.certificate, issuer_id=issuer_id)
        # Recorded before it is handed out: a certificate missing from the ledger would be
        # "unknown" to our OCSP for CAs without their own.
        await self.store.record_issued(issuer_id, issued.certificate)
        return issued

    async def revoke(
        self, issuer_id: str, serial: int, reason: RevocationReason
    ) -> tuple[Revocation, dt.datetime]:
        if reason is RevocationReason.REMOVE_FROM_CRL:
            raise InvalidRequestError(
                "reason removeFromCRL (8) is only for delta CRLs (RFC 5280 §5.3.1); a "
                "certificate cannot be revoked with it",
                issuer_id=issuer_id,
                hint="use another reason, e.g. unspecified, keyCompromise or superseded",
            )
        self._served(issuer_id)
        try:
            revocation = await self.registry.revoke(issuer_id, serial, reason)
            when = revocation.revoked_at or dt.datetime.now(dt.UTC)
            entry, newly = await self.store.record_revocation(
                issuer_id, serial, revocation.reason, when
            )
        finally:
            # Also when recording failed: the CA may have revoked it already.
            self.revocation_changed(issuer_id, serial)
        assert entry.revoked_at is not None
        if not newly or revocation.already_revoked:
            # Already revoked: report what was recorded, not the reason asked for now.
            reason = entry.reason if entry.reason is not None else revocation.reason
            return attrs.evolve(revocation, reason=reason, already_revoked=True), entry.revoked_at
        return revocation, entry.revoked_at

    # -- profiles ------------------------------------------------------------------------

    async def _stored_profile(self, issuer_id: str, name: str) -> StoredProfile | None:
        """The stored profile a request names; None for ``default`` when none is stored.
        Raises UnknownProfileError (422) for any other name that is not stored."""
        record = await self.store.profile(name) if PROFILE_NAME.fullmatch(name) else None
        if record is None:
            if name == DEFAULT_PROFILE:
                return None
            known = [p.name for p in await self.store.profiles()]
            raise UnknownProfileError(name, known, issuer_id=issuer_id)
        try:
            return StoredProfile.from_doc(name, record.doc)
        except ConfigError as exc:
            # Only a row written past the API (by hand, or by a newer certctl) gets here.
            raise TransientError(
                f"profile {name!r} is stored but cannot be used: {exc.message}",
                issuer_id=issuer_id,
                retry_after=30,
                hint="PUT the profile again",
            ) from None

    async def profiles(self) -> builtins.list[ProfileRecord]:
        return await self.store.profiles()

    async def profile(self, name: str) -> ProfileRecord:
        record = await self.store.profile(name) if PROFILE_NAME.fullmatch(name) else None
        if record is None:
            raise NotFoundError(f"no profile {name!r} is stored")
        return record

    async def put_profile(self, name: str, body: Mapping[str, Any]) -> tuple[ProfileRecord, bool]:
        """Create or replace a profile; returns it and whether it was created. Raises
        ConfigError (every problem) and, when another writer changed the profile between
        this read and the write, RevisionConflictError (409)."""
        profile = StoredProfile.from_doc(name, body)
        async with self._lock(_PROFILE_LOCK + name):
            stored = await self.store.profile(name)
            expected = stored.revision if stored is not None else 0
            log.debug("profile %s: writing the store (expected revision %d)", name, expected)
            saved = await self.store.put_profile(name, profile.as_doc(), expected)
        log.info("profile %s stored at revision %d: %s", name, saved.revision, saved.doc)
        return saved, stored is None

    async def delete_profile(self, name: str) -> None:
        if not PROFILE_NAME.fullmatch(name):
            raise NotFoundError(f"no profile {name!r} is stored")
        async with self._lock(_PROFILE_LOCK + name):
            if not await self.store.delete_profile(name):
                raise NotFoundError(f"no profile {name!r} is stored")
        log.info("profile %s deleted", name)

    # -- CRL and OCSP --------------------------------------------------------------------

    async def crl(self, issuer_id: str) -> bytes:
        self._served(issuer_id)
        return await self.registry.crl(issuer_id)

    async def _lookup(self, issuer_id: str, serial: int) -> CertificateStatus:
        """The ledger's status, unless the CA's own CRL (when it publishes one) says revoked:
        that catches certificates revoked at the CA past certctl (``step ca revoke``)."""
        status = await self.store.status(issuer_id, serial)
        if status.state == "revoked":
            return status
        revoked = await self._crl_revocations(issuer_id)
        listed = revoked.get(serial) if revoked is not None else None
        if listed is None:
            return status
        when, reason = listed
        return CertificateStatus(serial, "revoked", when, reason)

    async def _crl_revocations(
        self, issuer_id: str
    ) -> Mapping[int, tuple[dt.datetime, RevocationReason | None]] | None:
        """serial -> (time, reason) from the issuer's CRL, or None without one.

        The connector fetches, verifies and caches the CRL; its entries are indexed once
        per new CRL. An unavailable CRL leaves the ledger's answer standing (logged)."""
        try:
            async with self.registry.lease(issuer_id) as connector:
                if not connector.capabilities.crl:
                    return None
                der = await connector.crl()
        except CertctlError as exc:
            log.info("issuer %s: its CRL is unavailable for OCSP: %s", issuer_id, exc.message)
            return None
        cached = self._crl_index.get(issuer_id)
        if cached is not None and cached[0] == der:
            return cached[1]
        index = await asyncio.to_thread(_index_crl, der)
        self._crl_index[issuer_id] = (der, index)
        return index

    async def ocsp(self, issuer_id: str, request_der: bytes) -> bytes:
        """A DER OCSP response; never raises: errors become OCSP error statuses."""
        if not ISSUER_ID.match(issuer_id):
            return ocsp_error_response("unauthorized")
        try:
            async with self.registry.lease(issuer_id) as connector:
                if connector.capabilities.ocsp:
                    return await connector.ocsp(request_der)
        except UnknownIssuerError:
            return ocsp_error_response("unauthorized")
        except InvalidRequestError:
            return ocsp_error_response("malformed_request")
        except TransientError:
            return ocsp_error_response("try_later")
        except CertctlError as exc:
            log.error("issuer %s: OCSP failed: %s", issuer_id, exc)  # noqa: TRY400
            return ocsp_error_response("internal_error")
        delegated = self._responders.get(issuer_id)
        responder = await delegated.responder() if delegated is not None else None
        if responder is None:
            return ocsp_error_response("unauthorized")
        return await responder.respond(request_der, functools.partial(self._lookup, issuer_id))

    async def ocsp_for_serial(self, issuer_id: str, serial: int) -> bytes:
        if not ISSUER_ID.match(issuer_id):
            return ocsp_error_response("unauthorized")
        try:
            chain = await self.registry.ca_chain(issuer_id)
        except UnknownIssuerError:
            return ocsp_error_response("unauthorized")
        except TransientError:
            return ocsp_error_response("try_later")
        except CertctlError as exc:
            log.error("issuer %s: reading the CA chain failed: %s", issuer_id, exc)  # noqa: TRY400
            return ocsp_error_response("internal_error")
        return await self.ocsp(issuer_id, build_ocsp_request(chain[0], serial))


def _index_crl(der: bytes) -> dict[int, tuple[dt.datetime, RevocationReason | None]]:
    """The entries of a CRL the connector already verified, by serial."""
    index: dict[int, tuple[dt.datetime, RevocationReason | None]] = {}
    for entry in x509.load_der_x509_crl(der):
        reason: RevocationReason | None = None
        try:
            flag = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            reason = RevocationReason.parse(flag.name)
        except (x509.ExtensionNotFound, CertctlError, ValueError):
            reason = None
        index[entry.serial_number] = (entry.revocation_date_utc, reason)
    return index


def _resend(prefix: str, name: str, moved: list[str]) -> ConfigProblem:
    fields = ", ".join(f"{prefix}.{k}" for k in moved)
    return ConfigProblem(
        f"{prefix}.{name}",
        f"the placeholder {MASK} cannot keep the stored secret when {fields} change(s): "
        "they decide what the secret unlocks",
        f"send {name} itself again with this change",
    )
