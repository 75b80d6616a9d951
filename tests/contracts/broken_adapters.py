"""Deliberately broken adapters: each breaks one rule of the contract.

``test_suite_has_teeth`` runs the contract suite against every case and checks that it
fails exactly where it should (``expected_failures``, by test name). Each adapter is the
shipped reference :class:`~certctl_contracts.reference.ReferenceIssuer` with one hook
overridden.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from certctl_contracts.harness import HarnessFactory, LiveIssuer
from certctl_contracts.reference import ReferenceCA, ReferenceIssuer, reference_harness
from certctl_core import (
    Capabilities,
    CertificateRequest,
    IssuedCertificate,
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


@attrs.frozen
class BrokenCase:
    """An adapter class and the contract tests it must fail (names without parameters)."""

    adapter: type[ReferenceIssuer]
    expected_failures: frozenset[str]

    def harness(self, tmp_path: Path) -> AbstractAsyncContextManager[LiveIssuer]:
        return reference_harness(tmp_path, issuer_class=self.adapter)


def _case(adapter: type[ReferenceIssuer], *failures: str) -> BrokenCase:
    return BrokenCase(adapter, frozenset(failures))


#: case name -> broken adapter and the tests that must catch it.
BROKEN: dict[str, BrokenCase] = {
    "wrong_sans": _case(WrongSansCA, "test_sans_of_all_four_types_are_as_requested"),
    "max_ttl_ignored": _case(
        MaxTtlIgnoredCA, "test_profile_max_ttl_shorter_than_default_is_honoured"
    ),
    "password_in_repr": _case(
        PasswordInReprCA, "test_secrets_never_appear_in_repr_str_errors_or_logs"
    ),
    "httpx_errors_escape": _case(
        HttpxErrorsEscapeCA,
        "test_odd_serials_raise_only_certctl_errors",
        "test_revoking_a_never_issued_serial_raises_only_certctl_errors",
    ),
    "repeated_serials": _case(
        RepeatedSerialsCA,
        "test_serials_are_unique_over_many_issuances",
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
}


def harness_of(case: str) -> HarnessFactory:
    """The harness factory for a broken case, by name."""
    return BROKEN[case].harness
