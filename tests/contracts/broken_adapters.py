"""Deliberately broken adapters: each breaks one rule of the contract.

``test_suite_has_teeth`` runs the contract suite against every case and checks that it
fails exactly where it should (``expected_failures``, by test name). Each adapter is the
shipped reference :class:`~certctl_contracts.reference.ReferenceIssuer` with one hook
overridden.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from certctl_contracts.harness import HarnessFactory, LiveIssuer
from certctl_contracts.reference import (
    ReferenceCA,
    ReferenceCABusy,
    ReferenceIssuer,
    connector_type,
    reference_harness,
)
from certctl_core import (
    Capabilities,
    CAUnavailableError,
    CertificateRequest,
    CertificateStatus,
    ConnectorType,
    HealthCheck,
    HealthReport,
    IssuedCertificate,
    RejectedError,
    RenewalWindow,
    Revocation,
    RevocationReason,
    SubjectAltNames,
)

__all__ = ["BROKEN", "BrokenCase"]


class WrongSansCA(ReferenceIssuer):
    """Keeps DNS names and IPs but drops email and URI SANs."""

    def sans_for(self, request: CertificateRequest) -> SubjectAltNames:
        sans = request.sans
        return SubjectAltNames(dns=sans.dns or ("fallback.invalid",), ips=sans.ips)


class MaxTtlIgnoredCA(ReferenceIssuer):
    """Gives the CA default whenever no validity is requested, ignoring the profile."""

    def validity_for(self, request: CertificateRequest) -> dt.timedelta:
        return request.validity or self.default_validity


class PasswordInReprCA(ReferenceIssuer):
    """Shows its key password in ``repr``."""

    def __repr__(self) -> str:
        password = self.password.reveal() if self.password is not None else ""
        return f"PasswordInReprCA(issuer_id={self.issuer_id!r}, password={password!r})"


class HttpxErrorsEscapeCA(ReferenceIssuer):
    """Lets the HTTP client's errors out instead of translating them."""

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        if serial not in self.ca.records:
            request = httpx.Request("POST", "https://ca.invalid/1.0/revoke")
            response = httpx.Response(404, request=request)
            response.raise_for_status()
        return await super().revoke(serial, reason)


class RepeatedSerialsCA(ReferenceIssuer):
    """Draws serials from a tiny pool, so they repeat."""

    _counter = 0

    def serial_for(self, request: CertificateRequest) -> int:
        RepeatedSerialsCA._counter += 1
        return 0x1000 + RepeatedSerialsCA._counter % 7


class KeyMismatchCA(ReferenceIssuer):
    """Certifies a key of its own instead of the CSR's."""

    _other = ec.generate_private_key(ec.SECP256R1()).public_key()

    def public_key_for(self, request: CertificateRequest) -> CertificatePublicKeyTypes:
        return self._other


class UntrustedChainCA(ReferenceIssuer):
    """Signs leaves with a rogue key under the real intermediate's name."""

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        real = self.ca
        rogue_key = ReferenceCA.create("Rogue").intermediate_key
        self.ca = attrs.evolve(real, intermediate_key=rogue_key)  # shares real.records
        try:
            return await super().issue(request)
        finally:
            self.ca = real


class TaskLeakCA(ReferenceIssuer):
    """Starts a background task per call and only stops them at close()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[None]] = set()

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self._tasks.add(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))
        return await super().issue(request)

    async def release(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().release()


class UndeclaredCrlCA(ReferenceIssuer):
    """Declares only ``status``; its ``crl`` raises NotImplementedError, not our error."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(status=True)

    async def crl(self) -> bytes:
        raise NotImplementedError("crl")

    async def ocsp(self, request_der: bytes) -> bytes:
        self.ensure_open()
        raise self.unsupported("ocsp")


class StillOpenAfterCloseCA(ReferenceIssuer):
    """Keeps serving after close()."""

    def ensure_open(self) -> None:
        return None


class NeverAlreadyRevokedCA(ReferenceIssuer):
    """Reports every revoke as a first one."""

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        return attrs.evolve(await super().revoke(serial, reason), already_revoked=False)


class RenewalAfterExpiryCA(ReferenceIssuer):
    """Suggests renewing after the certificate has expired."""

    def renewal_window_for(self, certificate: x509.Certificate) -> RenewalWindow:
        end = certificate.not_valid_after_utc
        return RenewalWindow(start=end, end=end + dt.timedelta(days=1))


# -- what is issued -----------------------------------------------------------------------


class ChainWithRootCA(ReferenceIssuer):
    """Hands out leaf, intermediate and root."""

    def chain_for(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        return (leaf, self.ca.intermediate, self.ca.root)


class MissingIntermediateCA(ReferenceIssuer):
    """Hands out the leaf alone."""

    def chain_for(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        return (leaf,)


class NoEkuCA(ReferenceIssuer):
    """Leaves out the extended key usages every profile asks for."""

    def ekus_for(self, request: CertificateRequest) -> frozenset[x509.ObjectIdentifier]:
        return frozenset()


class DefaultEkuForEveryProfileCA(ReferenceIssuer):
    """Ignores the profile: serverAuth + clientAuth for all."""

    def ekus_for(self, request: CertificateRequest) -> frozenset[x509.ObjectIdentifier]:
        return super().ekus_for(
            attrs.evolve(request, profile=attrs.evolve(request.profile, name="default"))
        )


class DroppedCommonNameCA(ReferenceIssuer):
    """Issues with an empty subject whatever the CSR asked."""

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        return await super().issue(_with_subject(request, x509.Name([])))


class ReplacedCommonNameCA(ReferenceIssuer):
    """Puts its own common name in the subject."""

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "replaced.invalid")])
        return await super().issue(_with_subject(request, name))


def _with_subject(request: CertificateRequest, subject: x509.Name) -> CertificateRequest:
    """The request with its CSR's subject replaced (same key, same SANs)."""

    class _CSR:
        def __init__(self, csr: x509.CertificateSigningRequest) -> None:
            self._csr = csr
            self.subject = subject

        def __getattr__(self, name: str) -> Any:
            return getattr(self._csr, name)

    return cast(CertificateRequest, _Renamed(request, _CSR(request.csr)))


class _Renamed:
    """A request whose ``csr`` is a stand-in; everything else is the original's."""

    def __init__(self, request: CertificateRequest, csr: Any) -> None:
        self._request = request
        self.csr = csr

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class CaTrueLeafCA(ReferenceIssuer):
    """Issues leaves with BasicConstraints CA:TRUE."""

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        issued = await super().issue(request)
        leaf = issued.certificate
        builder = x509.CertificateBuilder(
            issuer_name=leaf.issuer,
            subject_name=leaf.subject,
            public_key=leaf.public_key(),
            serial_number=leaf.serial_number,
            not_valid_before=leaf.not_valid_before_utc,
            not_valid_after=leaf.not_valid_after_utc,
        )
        for ext in leaf.extensions:
            if isinstance(ext.value, x509.BasicConstraints):
                builder = builder.add_extension(x509.BasicConstraints(True, None), True)
            else:
                builder = builder.add_extension(ext.value, ext.critical)
        bad = builder.sign(self.ca.intermediate_key, hashes.SHA256())
        return IssuedCertificate.from_certificates((bad, *issued.chain[1:]))


class FutureNotBeforeCA(ReferenceIssuer):
    """NotBefore a minute in the future (within the old one-minute tolerance)."""

    backdate = dt.timedelta(seconds=-50)


class ShortLifetimeCA(ReferenceIssuer):
    """Gives a quarter of the lifetime asked for."""

    def validity_for(self, request: CertificateRequest) -> dt.timedelta:
        return super().validity_for(request) / 4


class CounterSerialsCA(ReferenceIssuer):
    """Serials from a per-connector counter: unique in one connector, repeated after a
    rebuild on the same CA state, and without entropy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next = 0x1000

    def serial_for(self, request: CertificateRequest) -> int:
        self._next += 1
        return self._next


class LowEntropySerialsCA(ReferenceIssuer):
    """Large serials, but only 40 random bits."""

    def serial_for(self, request: CertificateRequest) -> int:
        return (0x7E57 << 120) | secrets.randbits(40)


# -- revocation ---------------------------------------------------------------------------


class ReasonNeverSentCA(ReferenceIssuer):
    """Revokes with reason unspecified whatever is asked."""

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        done = await super().revoke(serial, RevocationReason.UNSPECIFIED)
        return attrs.evolve(done, reason=reason)


class HexAsDecimalCA(ReferenceIssuer):
    """Sends the serial's decimal digits as if they were hex: another serial is revoked
    (here: none the CA knows, which this CA, like step-ca, accepts silently)."""

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        wrong = int(str(serial), 16)
        if wrong in self.ca.records:
            return await super().revoke(wrong, reason)
        if serial <= 0 or serial.bit_length() > 159:
            return await super().revoke(serial, reason)
        return Revocation(serial, reason, revoked_at=dt.datetime.now(dt.UTC))


class NeverIssuedIsRevokedCA(ReferenceIssuer):
    """Reports a never-issued serial as revoked (revoke succeeds, status says revoked)."""

    def unknown_serial(self, serial: int) -> Exception:
        raise _Accepted(serial)

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        try:
            return await super().revoke(serial, reason)
        except _Accepted:
            return Revocation(serial, reason, revoked_at=dt.datetime.now(dt.UTC))

    async def status(self, serial: int) -> CertificateStatus:
        status = await super().status(serial)
        if status.state == "unknown":
            return CertificateStatus(serial, "revoked", dt.datetime.now(dt.UTC), None)
        return status


class _Accepted(Exception):
    def __init__(self, serial: int) -> None:
        super().__init__(serial)


class UnknownIsGoodOcspCA(ReferenceIssuer):
    """OCSP answers 'good' for serials it never issued."""

    async def ocsp(self, request_der: bytes) -> bytes:
        request = ocsp.load_der_ocsp_request(request_der)
        if request.serial_number in self.ca.records:
            return await super().ocsp(request_der)
        self.ensure_open()
        fake = self.ca.sign(
            ReferenceCA.create("Fake").intermediate_key.public_key(),
            serial=request.serial_number,
        )
        del self.ca.records[request.serial_number]
        now = dt.datetime.now(dt.UTC)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=fake,
            issuer=self.ca.intermediate,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca.intermediate)
        signed = builder.sign(self.ca.intermediate_key, hashes.SHA256())
        return signed.public_bytes(serialization.Encoding.DER)


class ResponderWithoutOcspSigningCA(ReferenceIssuer):
    """Signs OCSP answers with a delegated responder certificate lacking id-kp-OCSPSigning."""

    async def ocsp(self, request_der: bytes) -> bytes:
        self.ensure_open()
        request = ocsp.load_der_ocsp_request(request_der)
        record = self.ca.records.get(request.serial_number)
        if record is None:
            return await super().ocsp(request_der)
        key = ReferenceCA.create("Responder").intermediate_key
        now = dt.datetime.now(dt.UTC)
        responder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OCSP responder")]))
            .issuer_name(self.ca.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .sign(self.ca.intermediate_key, hashes.SHA256())
        )
        revoked = record.revoked_at is not None
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=record.certificate,
            issuer=self.ca.intermediate,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=record.revoked_at,
            revocation_reason=record.reason.x509_flag if record.reason is not None else None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
        builder = builder.certificates([responder])
        signed = builder.sign(key, hashes.SHA256())
        return signed.public_bytes(serialization.Encoding.DER)


# -- health and faults --------------------------------------------------------------------


class CheckNeverProbesCA(ReferenceIssuer):
    """check() says ok without asking the CA."""

    async def check(self) -> HealthReport:
        self.ensure_open()
        return HealthReport((HealthCheck("ca", True, "configured"),))


class CheckRaisesCA(ReferenceIssuer):
    """check() raises instead of reporting."""

    async def check(self) -> HealthReport:
        self.ensure_open()
        await self._round_trip()
        return await super().check()


class UntranslatedErrorsCA(ReferenceIssuer):
    """Lets the transport's errors out untranslated."""

    def ca_error(self, exc: Exception) -> Exception:
        return exc


class TransientAsPermanentCA(ReferenceIssuer):
    """Classes an unreachable or busy CA as a permanent refusal."""

    def ca_error(self, exc: Exception) -> Exception:
        return RejectedError(f"the CA failed: {type(exc).__name__}")


class NoRetryAfterCA(ReferenceIssuer):
    """Transient errors without retry_after."""

    def ca_error(self, exc: Exception) -> Exception:
        if isinstance(exc, ReferenceCABusy):
            return CAUnavailableError("the CA is busy", status=503)
        return super().ca_error(exc)


# -- lifecycle ----------------------------------------------------------------------------


class BackgroundTaskAfterCloseCA(ReferenceIssuer):
    """Starts a refresher task on first use and never stops it."""

    _refresher: asyncio.Task[None] | None = None

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return await super().issue(request)


class DeadlockCA(ReferenceIssuer):
    """check() waits for a lock that issue() never releases."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._never = asyncio.Event()

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        await self._never.wait()
        return await super().ca_chain()


class BrokenCloseCA(ReferenceIssuer):
    """close() raises a foreign error."""

    async def release(self) -> None:
        raise RuntimeError("close failed")


# -- secrets ------------------------------------------------------------------------------

log = logging.getLogger(__name__)


class FactoryLogsConfigCA(ReferenceIssuer):
    """Logs its settings, password included, at DEBUG while being built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        password = self.password.reveal() if self.password is not None else ""
        log.debug("building with key_password=%s", password)


class SecretInCauseCA(ReferenceIssuer):
    """Raises a clean error whose __cause__ carries the key password."""

    def unknown_serial(self, serial: int) -> Exception:
        password = self.password.reveal() if self.password is not None else ""
        try:
            raise ValueError(f"lookup with token {password} failed")
        except ValueError as exc:
            error = RejectedError(f"no certificate with serial {serial:#x}", status=404)
            error.__cause__ = exc
            return error


# -- the connector type -------------------------------------------------------------------


def _type_without(**changes: Any) -> ConnectorType:
    return attrs.evolve(connector_type(), **changes)


@attrs.frozen
class BrokenCase:
    """An adapter class and the contract tests it must fail (names without parameters).

    ``kind`` replaces the connector type the harness reports; ``call_timeout`` the
    suite's per-call bound (to prove a deadlock is reported within it)."""

    adapter: type[ReferenceIssuer]
    expected_failures: frozenset[str]
    kind: ConnectorType | None = None
    call_timeout: float | None = None
    #: A text every expected failure's message contains.
    message: str | None = None

    def harness(self, tmp_path: Path) -> AbstractAsyncContextManager[LiveIssuer]:
        return reference_harness(tmp_path, issuer_class=self.adapter, kind=self.kind)


def _case(adapter: type[ReferenceIssuer], *failures: str, **options: Any) -> BrokenCase:
    return BrokenCase(adapter, frozenset(failures), **options)


_FAULTS = (
    "test_unreachable_ca_is_reported_by_check_and_transient",
    "test_erroring_ca_gives_transient_errors_with_retry_after",
)


#: case name -> broken adapter and the tests that must catch it.
BROKEN: dict[str, BrokenCase] = {
    "wrong_sans": _case(
        WrongSansCA,
        "test_sans_of_all_four_types_are_as_requested",
        "test_leaf_content_is_as_requested_for_every_profile",
    ),
    "chain_with_root": _case(
        ChainWithRootCA, "test_issued_chain_is_in_order_without_the_root", message="root"
    ),
    "missing_intermediate": _case(
        MissingIntermediateCA,
        "test_issued_chain_is_in_order_without_the_root",
        message="the intermediate CN=Reference Issuing CA is missing",
    ),
    "no_eku": _case(NoEkuCA, "test_leaf_content_is_as_requested_for_every_profile"),
    "eku_ignores_profile": _case(
        DefaultEkuForEveryProfileCA,
        "test_leaf_content_is_as_requested_for_every_profile",
        message="'tls-client'",
    ),
    "dropped_cn": _case(DroppedCommonNameCA, "test_leaf_content_is_as_requested_for_every_profile"),
    "replaced_cn": _case(
        ReplacedCommonNameCA, "test_leaf_content_is_as_requested_for_every_profile"
    ),
    "ca_true_leaf": _case(
        CaTrueLeafCA, "test_leaf_content_is_as_requested_for_every_profile", message="CA:TRUE"
    ),
    "future_not_before": _case(FutureNotBeforeCA, "test_not_before_is_not_in_the_future"),
    "short_lifetime": _case(ShortLifetimeCA, "test_requested_validity_is_honoured"),
    "counter_serials": _case(
        CounterSerialsCA,
        "test_serials_are_unique_random_and_at_most_20_octets",
        "test_serials_are_unique_across_a_rebuild_on_the_same_ca",
    ),
    "low_entropy_serials": _case(
        LowEntropySerialsCA,
        "test_serials_are_unique_random_and_at_most_20_octets",
        message="bits vary",
    ),
    "reason_never_sent": _case(
        ReasonNeverSentCA,
        "test_revocation_is_recorded_by_the_ca_with_its_reason",
        "test_revoked_certificate_has_status_revoked",
        "test_revoked_certificate_is_listed_in_crl",
        "test_ocsp_reports_good_then_revoked",
    ),
    "hex_as_decimal": _case(
        HexAsDecimalCA, "test_revocation_is_recorded_by_the_ca_with_its_reason"
    ),
    "never_issued_is_revoked": _case(
        NeverIssuedIsRevokedCA,
        "test_revoking_a_never_issued_serial_is_refused_or_recorded",
        "test_never_issued_serial_has_status_unknown",
    ),
    "unknown_is_good_ocsp": _case(
        UnknownIsGoodOcspCA, "test_ocsp_never_says_good_for_a_never_issued_serial"
    ),
    "responder_without_ocsp_signing": _case(
        ResponderWithoutOcspSigningCA,
        "test_ocsp_reports_good_then_revoked",
        message="id-kp-OCSPSigning",
    ),
    "check_never_probes": _case(
        CheckNeverProbesCA, "test_unreachable_ca_is_reported_by_check_and_transient"
    ),
    "check_raises": _case(CheckRaisesCA, "test_unreachable_ca_is_reported_by_check_and_transient"),
    "untranslated_errors": _case(UntranslatedErrorsCA, *_FAULTS, message="foreign"),
    "transient_as_permanent": _case(TransientAsPermanentCA, *_FAULTS),
    "no_retry_after": _case(
        NoRetryAfterCA, "test_erroring_ca_gives_transient_errors_with_retry_after"
    ),
    "background_task_after_close": _case(
        BackgroundTaskAfterCloseCA,
        "test_close_twice_is_harmless_and_stops_every_task",
        "test_cancelled_issue_leaves_no_task_behind",
    ),
    "deadlock": _case(
        DeadlockCA,
        "test_ca_chain_ends_at_the_root",
        call_timeout=2.0,
        message="did not return within 2.0s",
    ),
    "broken_close": _case(BrokenCloseCA, "test_close_twice_is_harmless_and_stops_every_task"),
    "factory_logs_config": _case(
        FactoryLogsConfigCA, "test_secrets_never_appear_in_repr_str_errors_or_logs"
    ),
    "secret_in_cause": _case(
        SecretInCauseCA, "test_secrets_never_appear_in_repr_str_errors_or_logs"
    ),
    "type_declares_fewer_capabilities": _case(
        ReferenceIssuer,
        "test_connector_type_describes_the_connector",
        kind=_type_without(capabilities=Capabilities(status=True)),
    ),
    "secret_fields_missing": _case(
        ReferenceIssuer,
        "test_connector_type_describes_the_connector",
        kind=_type_without(secret_fields=frozenset()),
        message="key_password",
    ),
    "max_ttl_ignored": _case(
        MaxTtlIgnoredCA, "test_profile_max_ttl_shorter_than_default_is_honoured"
    ),
    "password_in_repr": _case(
        PasswordInReprCA, "test_secrets_never_appear_in_repr_str_errors_or_logs"
    ),
    "httpx_errors_escape": _case(
        HttpxErrorsEscapeCA,
        "test_odd_serials_raise_only_certctl_errors",
        "test_revoking_a_never_issued_serial_is_refused_or_recorded",
    ),
    "repeated_serials": _case(
        RepeatedSerialsCA,
        "test_serials_are_unique_random_and_at_most_20_octets",
        "test_concurrent_issuances_all_succeed_with_unique_serials",
    ),
    "key_mismatch": _case(KeyMismatchCA, "test_leaf_public_key_is_the_csrs"),
    "untrusted_chain": _case(
        UntrustedChainCA,
        "test_chain_verifies_to_trust_anchor_for_dns_and_ip",
        "test_chain_verifies_to_trust_anchor_for_email_and_uri_only",
    ),
    "task_leak": _case(TaskLeakCA, "test_cancelled_issue_leaves_no_task_behind"),
    "undeclared_crl": _case(UndeclaredCrlCA, "test_undeclared_capabilities_raise_unsupported"),
    "still_open_after_close": _case(
        StillOpenAfterCloseCA, "test_calls_after_close_raise_issuer_closed"
    ),
    "never_already_revoked": _case(
        NeverAlreadyRevokedCA, "test_revoking_twice_reports_already_revoked"
    ),
    "renewal_after_expiry": _case(
        RenewalAfterExpiryCA,
        "test_renewal_window_lies_within_the_certificates_validity",
        message="after the certificate expires",
    ),
}


def harness_of(case: str) -> HarnessFactory:
    """The harness factory for a broken case, by name."""
    return BROKEN[case].harness
