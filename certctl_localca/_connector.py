"""The local CA connector: a one-process CA behind the IssuerPort.

Threading model: the event loop never waits on the disk or on long CPU work. Issuance,
revocation and CRL generation run in worker threads (``asyncio.to_thread``); status and
OCSP do a primary-key read of the ledger (microseconds, WAL readers never block) and one
ECDSA signature inline, because a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certctl_core import (
    Capabilities,
    CertificateRequest,
    CertificateStatus,
    ConfigError,
    ConfigProblem,
    HealthCheck,
    HealthReport,
    InvalidRequestError,
    IssuedCertificate,
    IssuerBase,
    IssuerClosedError,
    IssuerPort,
    PermanentError,
    PolicyViolationError,
    Revocation,
    RevocationReason,
    SubjectAltNames,
    TransientError,
    parse_serial,
)
from certctl_core.domain import format_serial_hex
from certctl_core.revocation import OCSPSigner, Signer, issuer_hashes, parse_ocsp_request
from certctl_localca._config import LocalCAConfig, UsageProfile
from certctl_localca._crl import CRLEncoder
from certctl_localca._ledger import Ledger, LedgerEntry
from certctl_localca._pki import (
    BACKDATE,
    CAMaterial,
    LeafSpec,
    build_leaf,
    build_responder,
    load_or_create_ca,
    load_or_propose_shared_ca,
    new_serial,
    shared_ca,
)
from certctl_localca._policy import check_subject_key, leaf_sans

if TYPE_CHECKING:
    from certctl_localca._pgledger import SharedLedger

__all__ = ["CAPABILITIES", "LocalCAIssuer", "build_localca_issuer"]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(crl=True, ocsp=True, status=True)
#: The OCSP responder certificate lives at least this long and is renewed at 2/3 of it.
_RESPONDER_LIFETIME = dt.timedelta(days=7)
#: Attempts at a fresh random serial before giving up (a collision of 159-bit randoms
#: is not expected to ever happen; the ledger's primary key would catch it).
_SERIAL_ATTEMPTS = 3
#: The shortest lifetime certified: X.509 times have whole seconds.
MIN_VALIDITY = dt.timedelta(seconds=1)


def _utc(epoch: int) -> dt.datetime:
    """A POSIX timestamp as an aware UTC datetime. (The connector reads the clock only
    through ``time.time()``, so a test can move it.)"""
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


async def build_localca_issuer(issuer_id: str, config: Mapping[str, Any]) -> IssuerPort:
    """The ``localca`` connector factory: validate ``config`` and open the state dir.

    Creates the root and intermediate on first use. Raises ConfigError (every problem at
    once) for invalid settings, unreadable files or a wrong key password.
    """
    try:
        parsed = LocalCAConfig.from_mapping(config)
    except ConfigError as exc:
        raise ConfigError(exc.problems, issuer_id=issuer_id, connector="localca") from None
    return await LocalCAIssuer.open(issuer_id, parsed)


class LocalCAIssuer(IssuerBase):
    """A CA in this process: issues, revokes, and signs CRLs and OCSP responses."""

    connector_name = "localca"

    def __init__(
        self,
        issuer_id: str,
        config: LocalCAConfig,
        ca: CAMaterial,
        ledger: Ledger | SharedLedger,
    ):
        super().__init__(issuer_id)
        self._config = config
        self._ledger = ledger
        self._set_ca(ca)
        #: a CA made here for a shared ledger that had none: stored at first use
        self._proposal: tuple[bytes, bytes, bytes] | None = None
        self._claim_lock = asyncio.Lock()
        self._crl_seq = 0  # revocation_seq of the last ledger row in the encoder
        self._crl: bytes | None = None
        self._crl_refresh_at = 0  # POSIX seconds: regenerate from then on, even if unchanged
        self._crl_lock = asyncio.Lock()
        self._responder: OCSPSigner | None = None
        self._responder_renew_at = 0.0
        self._responder_lock = asyncio.Lock()

    def _set_ca(self, ca: CAMaterial) -> None:
        self._ca = ca
        self._crl_encoder = CRLEncoder(ca.signer, ca.certificate.subject.public_bytes(), ca.key_id)
        self._issuer_hashes = issuer_hashes(ca.certificate)

    async def _ensure_ca(self) -> None:
        """Store the CA made here in the shared ledger before it is first used: a
        connector built and never used (a PUT refused after the build) leaves no CA behind
        whose key_password would then be required. If another replica stored one first,
        that one is used from now on (nothing was exposed of this one)."""
        if self._proposal is None:
            return
        async with self._claim_lock:
            proposal = self._proposal
            if proposal is None:
                return
            with self._storage("store the CA"):
                chain, key = await asyncio.to_thread(
                    cast("SharedLedger", self._ledger).ca, lambda: proposal
                )
            if chain != proposal[0]:
                try:
                    self._set_ca(shared_ca(self._config, chain, key))
                except ConfigError as exc:
                    raise PermanentError(
                        f"the CA another replica stored in the shared ledger cannot be used: "
                        f"{exc.problems[0].message}",
                        hint="every replica must be given the same key_password",
                    ) from None
            self._proposal = None

    @classmethod
    async def open(cls, issuer_id: str, config: LocalCAConfig) -> LocalCAIssuer:
        """Load or create the CA and open the ledger. Raises ConfigError, and
        TransientError when a shared ledger (``ledger_url``) cannot be reached."""
        if config.ledger_url is not None:
            return await cls._open_shared(issuer_id, config, config.ledger_url.reveal())
        try:
            ca = await asyncio.to_thread(load_or_create_ca, config)
        except ConfigError as exc:
            raise ConfigError(exc.problems, issuer_id=issuer_id, connector="localca") from None
        try:
            ledger = await asyncio.to_thread(Ledger.open, config.state_dir)
        except (OSError, sqlite3.Error) as exc:
            problem = ConfigProblem("state_dir", f"the ledger cannot be opened: {exc}")
            raise ConfigError([problem], issuer_id=issuer_id, connector="localca") from exc
        log.debug("localca %s ready in %s", issuer_id, config.state_dir)
        return cls(issuer_id, config, ca, ledger)

    @classmethod
    async def _open_shared(cls, issuer_id: str, config: LocalCAConfig, url: str) -> LocalCAIssuer:
        try:
            from certctl_localca._pgledger import SharedLedger, SharedLedgerError
        except ImportError:
            problem = ConfigProblem(
                "ledger_url",
                "a shared ledger needs the psycopg driver, which is not installed",
                "pip install 'certctl-connectors[postgres]'",
            )
            raise ConfigError([problem], issuer_id=issuer_id, connector="localca") from None
        try:
            ledger = await asyncio.to_thread(SharedLedger.open, url, issuer_id)
        except SharedLedgerError as exc:
            raise TransientError(
                f"the shared ledger cannot be reached: {exc}",
                issuer_id=issuer_id,
                retry_after=1.0,
                hint="check that PostgreSQL is running and reachable (ledger_url)",
            ) from None
        try:
            ca, proposal = await asyncio.to_thread(load_or_propose_shared_ca, config, ledger)
        except ConfigError as exc:
            await asyncio.to_thread(ledger.close)
            raise ConfigError(exc.problems, issuer_id=issuer_id, connector="localca") from None
        except SharedLedgerError as exc:
            await asyncio.to_thread(ledger.close)
            raise TransientError(
                f"the shared ledger cannot be read: {exc}", issuer_id=issuer_id, retry_after=1.0
            ) from None
        log.debug("localca %s ready on a shared ledger", issuer_id)
        issuer = cls(issuer_id, config, ca, ledger)
        issuer._proposal = proposal
        return issuer

    async def _lookup(self, serial: int) -> LedgerEntry | None:
        """A point read: on the loop for the local ledger, in a thread for a shared one."""
        if self._ledger.remote:
            return await asyncio.to_thread(self._ledger.lookup, serial)
        return self._ledger.lookup(serial)

    def __repr__(self) -> str:
        return (
            f"LocalCAIssuer(issuer_id={self.issuer_id!r}, "
            f"state_dir={str(self._config.state_dir)!r}, closed={self.closed})"
        )

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    @contextlib.contextmanager
    def _storage(self, action: str) -> Iterator[None]:
        """Translate ledger and file errors: the one place they become CertctlErrors."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if self.closed:
                raise IssuerClosedError("this connector was closed") from exc
            log.warning("localca %s: could not %s: %s", self.issuer_id, action, exc)
            if isinstance(exc, sqlite3.OperationalError | OSError):
                raise TransientError(
                    f"the ledger could not {action}: {exc}", retry_after=1.0
                ) from exc
            raise PermanentError(f"the ledger could not {action}: {exc}") from exc

    # -- issuance ---------------------------------------------------------------------

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        await self._ensure_ca()
        profile = self._config.profile(request.profile.name)
        if profile is None:
            raise PolicyViolationError(
                f"profile {request.profile.name!r} is not configured for this CA",
                hint=f"use one of {sorted(self._config.profiles)} or add it under 'profiles'",
            )
        validity = request.effective_validity(self._config.validity)
        if validity < MIN_VALIDITY:
            raise InvalidRequestError(
                f"the requested lifetime {validity} is shorter than {MIN_VALIDITY}",
                hint="ask for a lifetime of at least one second",
            )
        check_subject_key(request.csr.public_key())
        sans = leaf_sans(request.common_name, request.sans, profile)
        with self._storage("record the certificate"):
            cert = await asyncio.to_thread(self._issue_sync, request, sans, profile, validity)
        log.info(
            "localca %s issued serial 0x%s (profile %s) until %s",
            self.issuer_id,
            format_serial_hex(cert.serial_number),
            profile.name,
            cert.not_valid_after_utc.isoformat(),
        )
        return IssuedCertificate(cert, (cert, *self._ca.intermediates))

    def _issue_sync(
        self,
        request: CertificateRequest,
        sans: SubjectAltNames,
        profile: UsageProfile,
        validity: dt.timedelta,
    ) -> x509.Certificate:
        clock = time.time()
        # X.509 times have whole seconds: count from the next one, so that the lifetime
        # asked for runs from now (as step-ca counts it) and a lifetime shorter than the
        # backdate is not expired on arrival. NotBefore is backdated for clients whose
        # clocks are behind. Never past the issuing CA's own expiry.
        start = _utc(math.ceil(clock))
        not_before = start - BACKDATE
        lifetime = dt.timedelta(seconds=math.ceil(validity.total_seconds()))
        not_after = min(start + lifetime, self._ca.certificate.not_valid_after_utc)
        if not_after <= start:
            raise PermanentError(
                "the issuing CA certificate has expired",
                hint="renew the CA (ca_cert_file) or start a new state_dir",
            )
        public_key = request.csr.public_key()
        for _ in range(_SERIAL_ATTEMPTS):
            spec = LeafSpec(
                serial=new_serial(),
                common_name=request.common_name,
                sans=sans,
                public_key=public_key,
                profile=profile,
                not_before=not_before,
                not_after=not_after,
            )
            try:
                cert = build_leaf(
                    self._ca, spec, crl_url=self._config.crl_url, ocsp_url=self._config.ocsp_url
                )
            except (ValueError, TypeError) as exc:
                raise InvalidRequestError(f"the CSR cannot be certified: {exc}") from exc
            # Recorded before it is handed out: a certificate absent from the ledger
            # would be "unknown" to OCSP.
            if self._ledger.record_issued(spec.serial, int(clock), int(not_after.timestamp())):
                return cert
        raise PermanentError("no unused serial number found")

    # -- revocation -------------------------------------------------------------------

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        serial = parse_serial(serial)
        reason = RevocationReason.parse(reason)
        if reason is RevocationReason.REMOVE_FROM_CRL:
            raise InvalidRequestError("removeFromCRL is for delta CRLs and cannot revoke")
        await self._ensure_ca()
        with self._storage("record the revocation"):
            entry, newly = await asyncio.to_thread(
                self._ledger.revoke, serial, int(time.time()), reason
            )
        if entry is None:
            raise InvalidRequestError(
                f"serial 0x{format_serial_hex(serial)} was never issued by this CA",
                hint="check the serial (hex is written 0x...) and the issuer",
            )
        assert entry.revoked_at is not None and entry.reason is not None
        if newly:
            log.info(
                "localca %s revoked serial 0x%s (%s)",
                self.issuer_id,
                format_serial_hex(serial),
                reason.rfc_name,
            )
        return Revocation(
            serial, entry.reason, already_revoked=not newly, revoked_at=_utc(entry.revoked_at)
        )

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        await self._ensure_ca()
        return self._ca.chain

    async def status(self, serial: int) -> CertificateStatus:
        self.ensure_open()
        serial = parse_serial(serial)
        await self._ensure_ca()
        with self._storage("read the certificate status"):
            entry = await self._lookup(serial)
        if entry is None:
            return CertificateStatus(serial, "unknown")
        if entry.revoked_at is None:
            return CertificateStatus(serial, "good")
        return CertificateStatus(serial, "revoked", _utc(entry.revoked_at), entry.reason)

    # -- CRL --------------------------------------------------------------------------

    async def crl(self) -> bytes:
        """The current CRL; regenerated (new CRL number) after a revocation, and when half
        of the previous one's validity has passed."""
        self.ensure_open()
        await self._ensure_ca()
        async with self._crl_lock:
            with self._storage("build the CRL"):
                return await asyncio.to_thread(self._crl_sync)

    def _crl_sync(self) -> bytes:
        rows = self._ledger.revocations_since(self._crl_seq)
        if rows:
            self._crl_encoder.add_many(rows)
            self._crl_seq = rows[-1][3]
        now = int(time.time())
        validity = int(self._config.crl_validity.total_seconds())
        if self._ledger.remote:
            # One CRL for every replica: the stored one unless it misses a revocation or
            # is due; else signed here with the next number of the one shared sequence.
            def sign(number: int) -> tuple[bytes, int]:
                return self._crl_encoder.sign(number, now, now + validity), now + validity // 2

            shared = cast("SharedLedger", self._ledger)
            return shared.shared_crl(self._crl_seq, now, sign)
        if self._crl is not None and not rows and now < self._crl_refresh_at:
            return self._crl
        number = self._ledger.next_crl_number()
        self._crl = self._crl_encoder.sign(number, now, now + validity)
        self._crl_refresh_at = now + validity // 2
        log.debug(
            "localca %s signed CRL %d with %d entries",
            self.issuer_id,
            number,
            self._crl_encoder.count,
        )
        return self._crl

    # -- OCSP -------------------------------------------------------------------------

    async def ocsp(self, request_der: bytes) -> bytes:
        """A signed OCSP response to one DER request: good, revoked, or unknown for
        serials this CA never issued; ``unauthorized`` when the request names another CA.

        Raises InvalidRequestError for malformed or oversized requests.
        """
        self.ensure_open()
        if not isinstance(request_der, bytes | bytearray | memoryview):
            raise InvalidRequestError("an OCSP request must be DER bytes")
        try:
            query = parse_ocsp_request(bytes(request_der))
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message, hint=exc.hint) from exc
        await self._ensure_ca()
        responder = await self._current_responder()
        entry = None
        if responder.serves(query):
            with self._storage("read the certificate status"):
                entry = await self._lookup(query.serial)
        if entry is None:
            return responder.respond(query, int(time.time()), known=False)
        return responder.respond(
            query, int(time.time()), known=True, revoked_at=entry.revoked_at, reason=entry.reason
        )

    async def _current_responder(self) -> OCSPSigner:
        responder = self._responder
        if responder is not None and time.time() < self._responder_renew_at:
            return responder
        async with self._responder_lock:
            if self._responder is None or time.time() >= self._responder_renew_at:
                with self._storage("record the OCSP responder certificate"):
                    self._responder = await asyncio.to_thread(self._new_responder)
                cert = self._responder.certificate
                lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
                renew_after = lifetime.total_seconds() * 2 / 3
                self._responder_renew_at = cert.not_valid_before_utc.timestamp() + renew_after
            return self._responder

    def _new_responder(self) -> OCSPSigner:
        """A fresh responder key (kept only in memory) and its certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _utc(int(time.time()))
        lifetime = max(_RESPONDER_LIFETIME, 4 * self._config.ocsp_validity)
        not_after = min(now + lifetime, self._ca.certificate.not_valid_after_utc)
        for _ in range(_SERIAL_ATTEMPTS):
            serial = new_serial()
            cert = build_responder(
                self._ca, key, serial, now - BACKDATE, not_after, self._config.ca_name
            )
            issued_at, expires = int(now.timestamp()), int(not_after.timestamp())
            if self._ledger.record_issued(serial, issued_at, expires):
                log.info(
                    "localca %s: new OCSP responder certificate 0x%s",
                    self.issuer_id,
                    format_serial_hex(serial),
                )
                return OCSPSigner(
                    Signer.for_key(key),
                    cert,
                    self._issuer_hashes,
                    int(self._config.ocsp_validity.total_seconds()),
                )
        raise PermanentError("no unused serial number found")

    # -- health and lifecycle ---------------------------------------------------------

    async def check(self) -> HealthReport:
        self.ensure_open()
        await self._ensure_ca()
        checks: list[HealthCheck] = []
        now = _utc(int(time.time()))
        for cert in self._ca.chain:
            left = cert.not_valid_after_utc - now
            checks.append(
                HealthCheck(
                    f"certificate {cert.subject.rfc4514_string()}",
                    left > dt.timedelta(0),
                    f"expires {cert.not_valid_after_utc.isoformat()} ({left.days} days left)",
                )
            )
        try:
            if self._ledger.remote:  # a database round trip: not on the event loop
                issued, revoked = await asyncio.to_thread(self._ledger.counts)
            else:
                issued, revoked = self._ledger.counts()
            checks.append(
                HealthCheck("ledger", True, f"{issued} certificates issued, {revoked} revoked")
            )
        except (sqlite3.Error, OSError) as exc:
            checks.append(HealthCheck("ledger", False, f"cannot be read: {exc}"))
        if self._ledger.remote:
            return HealthReport(tuple(checks))
        writable = os.access(self._config.state_dir, os.W_OK)
        checks.append(
            HealthCheck(
                "state_dir",
                writable,
                f"{self._config.state_dir} is {'writable' if writable else 'not writable'}",
            )
        )
        return HealthReport(tuple(checks))

    async def release(self) -> None:
        await asyncio.to_thread(self._ledger.close)
        log.debug("localca %s closed", self.issuer_id)
