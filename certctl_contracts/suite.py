"""The issuer contract suite: one set of tests every certctl connector must pass.

Use it by subclassing :class:`IssuerContract` in a test module and overriding one
fixture, ``live_issuer``::

    from certctl_contracts import IssuerContract, LiveIssuer

    class TestMyIssuer(IssuerContract):
        @pytest.fixture
        async def live_issuer(self, tmp_path):
            async with start_my_ca(tmp_path) as ca:
                yield LiveIssuer(issuer=await build_my_issuer(ca), trust_anchors=(ca.root,))

The class is not named ``Test*`` so it never runs on its own. Tests that need an
optional capability (``crl``, ``ocsp``, ``status``) are skipped, with a reason naming the
adapter and the capability, when the adapter does not declare it; each undeclared
capability is itself tested to raise UnsupportedCapabilityError. Results are checked
through a side channel (``cryptography``), never by asking the adapter. Every call goes
through a guard that fails the test if anything but a CertctlError escapes.

The suite calls the adapter directly, the way the registry would: requests are first
passed through :func:`certctl_core.policy.cap_request`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from certctl_contracts import checks
from certctl_contracts.csr import KeyKind, build_csr, new_private_key
from certctl_contracts.harness import LiveIssuer
from certctl_core.domain import (
    Capabilities,
    CertificateRequest,
    CertificateStatus,
    HealthReport,
    IssuedCertificate,
    Profile,
    Revocation,
    RevocationReason,
    SubjectAltNames,
    public_key_der,
)
from certctl_core.errors import (
    CertctlError,
    InvalidRequestError,
    IssuerClosedError,
    PermanentError,
    UnsupportedCapabilityError,
)
from certctl_core.policy import CLOCK_TOLERANCE, cap_request
from certctl_core.ports import IssuerPort

__all__ = [
    "CAPABILITY_NAMES",
    "CONCURRENT_ISSUANCES",
    "CONTRACT_SANS",
    "SEQUENTIAL_ISSUANCES",
    "GuardedIssuer",
    "IssuerContract",
    "describe",
]

T = TypeVar("T")

#: The optional capabilities a connector may declare.
CAPABILITY_NAMES = ("crl", "ocsp", "status")
#: Issuances run at once by the concurrency test.
CONCURRENT_ISSUANCES = 50
#: Issuances run one after another by the serial-uniqueness test.
SEQUENTIAL_ISSUANCES = 20
#: Upper bound for one contract test's calls; a hung adapter fails instead of hanging.
CALL_TIMEOUT = 120.0
#: Largest serial RFC 5280 allows: 20 octets, positive.
MAX_SERIAL = (1 << 159) - 1
#: The names the SAN test asks for: one of each of the four types.
CONTRACT_SANS = SubjectAltNames(
    dns=("svc.contract.test",),
    ips=(ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")),
    emails=("owner@contract.test",),
    uris=("spiffe://contract.test/svc",),
)


def describe(issuer: IssuerPort) -> str:
    """How skip reasons and failures name an adapter: its class and issuer id."""
    try:
        issuer_id = issuer.issuer_id
    except Exception:  # noqa: BLE001 - only used to describe the adapter
        issuer_id = "?"
    return f"{type(issuer).__qualname__} (issuer {issuer_id!r})"


def _foreign(what: str, issuer: IssuerPort, exc: BaseException) -> NoReturn:
    pytest.fail(
        f"{describe(issuer)}.{what} let a foreign exception escape: "
        f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}. Only CertctlError "
        "subclasses may escape an adapter; translate it where the adapter does I/O.",
    )


class GuardedIssuer:
    """The adapter under test, wrapped so that any non-CertctlError fails the test.

    Every CertctlError raised is recorded in ``errors`` (the secrets test reads them).
    """

    def __init__(self, issuer: IssuerPort) -> None:
        self.raw = issuer
        self.errors: list[CertctlError] = []

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                return await awaitable
        except CertctlError as exc:
            self.errors.append(exc)
            raise
        except TimeoutError as exc:
            pytest.fail(f"{describe(self.raw)}.{what} did not finish in {CALL_TIMEOUT}s: {exc}")
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything foreign
            _foreign(what, self.raw, exc)

    @property
    def issuer_id(self) -> str:
        return self.raw.issuer_id

    @property
    def capabilities(self) -> Capabilities:
        return self.raw.capabilities

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        issued = await self._call("issue()", self.raw.issue(cap_request(request)))
        if not isinstance(issued, IssuedCertificate):
            pytest.fail(f"issue() returned {type(issued).__name__}, not IssuedCertificate")
        return issued

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        return await self._call(f"revoke({serial})", self.raw.revoke(serial, reason))

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        return await self._call("ca_chain()", self.raw.ca_chain())

    async def check(self) -> HealthReport:
        return await self._call("check()", self.raw.check())

    async def crl(self) -> bytes:
        return await self._call("crl()", self.raw.crl())

    async def ocsp(self, request_der: bytes) -> bytes:
        return await self._call("ocsp()", self.raw.ocsp(request_der))

    async def status(self, serial: int) -> CertificateStatus:
        return await self._call(f"status({serial})", self.raw.status(serial))

    async def close(self) -> None:
        await self._call("close()", self.raw.close())

    async def optional(self, capability: str, serial: int = 1) -> object:
        """Call the optional operation ``capability`` with a harmless argument."""
        if capability == "crl":
            return await self.crl()
        if capability == "ocsp":
            return await self.ocsp(b"\x30\x00")
        if capability == "status":
            return await self.status(serial)
        raise AssertionError(f"unknown capability {capability!r}")


def _request(
    sans: SubjectAltNames,
    *,
    profile: Profile | None = None,
    validity: dt.timedelta | None = None,
    key_kind: KeyKind = "ec-p256",
    common_name: str | None = None,
) -> CertificateRequest:
    csr, _key = build_csr(sans, common_name=common_name, key=new_private_key(key_kind))
    return CertificateRequest.from_csr(csr, profile=profile, validity=validity)


def _dns(name: str = "svc.contract.test") -> CertificateRequest:
    return _request(SubjectAltNames(dns=(name,)), common_name=name)


def _unclosed_resources() -> list[str]:
    """ResourceWarnings (unclosed sockets, transports) raised by collecting garbage now."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def _raises(kind: type[CertctlError], what: str) -> Iterator[None]:
    """Expect a CertctlError of ``kind`` (the guard already fails on foreign ones)."""
    try:
        yield
    except kind:
        return
    except CertctlError as exc:
        pytest.fail(f"{what} raised {type(exc).__name__} ({exc}), expected {kind.__name__}")
    pytest.fail(f"{what} did not raise; expected {kind.__name__}")


@pytest.mark.anyio
class IssuerContract:
    """The contract every issuer connector satisfies. Subclass it as ``Test<Something>``.

    Override ``live_issuer`` (a fixture yielding :class:`LiveIssuer`); nothing else is
    required. The suite closes the issuer after each test (closing twice is harmless by
    contract); the fixture should stop whatever it started.
    """

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The suite runs on asyncio; authors need no conftest."""
        return "asyncio"

    @pytest.fixture
    def live_issuer(self) -> LiveIssuer:
        """Override me: yield a LiveIssuer connected to a live CA (see the module doc)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the 'live_issuer' fixture to yield a "
            "certctl_contracts.LiveIssuer (adapter, trust anchors, secrets, default "
            "validity); see docs/contract-suite.md"
        )

    @pytest.fixture
    async def issuer(self, live_issuer: LiveIssuer) -> AsyncIterator[GuardedIssuer]:
        """The adapter behind the foreign-exception guard; closed after the test."""
        if not isinstance(live_issuer, LiveIssuer):
            pytest.fail(f"live_issuer yielded {type(live_issuer).__name__}, not LiveIssuer")
        guarded = GuardedIssuer(live_issuer.issuer)
        yield guarded
        await guarded.close()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def require(issuer: GuardedIssuer, capability: str) -> None:
        """Skip the test, naming adapter and capability, unless ``capability`` is declared."""
        if capability not in issuer.capabilities.names():
            pytest.skip(
                f"{describe(issuer.raw)} does not declare capability {capability!r} "
                "(its absence is checked by test_undeclared_capabilities_raise_unsupported)"
            )

    # -- what is issued ------------------------------------------------------------------

    @pytest.mark.parametrize("key_kind", ["ec-p256", "rsa-2048"])
    async def test_leaf_public_key_is_the_csrs(
        self, issuer: GuardedIssuer, key_kind: KeyKind
    ) -> None:
        request = _request(SubjectAltNames(dns=("key.contract.test",)), key_kind=key_kind)
        issued = await issuer.issue(request)
        assert public_key_der(issued.certificate.public_key()) == public_key_der(
            request.csr.public_key()
        ), "the leaf certifies a different public key than the CSR's"

    async def test_sans_of_all_four_types_are_as_requested(self, issuer: GuardedIssuer) -> None:
        issued = await issuer.issue(_request(CONTRACT_SANS))
        got = SubjectAltNames.of(issued.certificate)
        assert got.same_as(CONTRACT_SANS), f"asked for {CONTRACT_SANS}, got {got}"

    async def test_chain_verifies_to_trust_anchor_for_dns_and_ip(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        issued = await issuer.issue(_request(CONTRACT_SANS))
        assert issued.chain[0] == issued.certificate, "chain[0] must be the leaf"
        anchors = live_issuer.trust_anchors
        path = checks.verify_for_server(issued, anchors, x509.DNSName(CONTRACT_SANS.dns[0]))
        assert path[-1] in anchors
        for ip in CONTRACT_SANS.ips:
            checks.verify_for_server(issued, anchors, x509.IPAddress(ip))

    async def test_chain_verifies_to_trust_anchor_for_email_and_uri_only(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        sans = SubjectAltNames(emails=CONTRACT_SANS.emails, uris=CONTRACT_SANS.uris)
        issued = await issuer.issue(_request(sans))
        path, names = checks.verify_for_client(issued, live_issuer.trust_anchors)
        assert path[-1] in live_issuer.trust_anchors
        assert SubjectAltNames.from_extension(x509.SubjectAlternativeName(names)).same_as(sans)

    async def test_ca_chain_ends_at_a_trust_anchor(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        chain = await issuer.ca_chain()
        assert chain, "ca_chain() returned no certificates"
        assert chain[-1] in live_issuer.trust_anchors, (
            "ca_chain() must end with the trust anchor (root last)"
        )
        issued = await issuer.issue(_dns())
        names = [c.subject.rfc4514_string() for c in chain]
        assert any(c.subject == issued.certificate.issuer for c in chain), (
            f"ca_chain() {names} lacks the leaf's issuer "
            f"{issued.certificate.issuer.rfc4514_string()}: it must be the issuing chain, "
            "intermediates first and root last"
        )

    async def test_serial_is_positive_and_at_most_20_octets(self, issuer: GuardedIssuer) -> None:
        issued = await issuer.issue(_dns())
        assert 0 < issued.serial <= MAX_SERIAL, f"serial {issued.serial:#x} breaks RFC 5280"

    async def test_serials_are_unique_over_many_issuances(self, issuer: GuardedIssuer) -> None:
        serials = [(await issuer.issue(_dns())).serial for _ in range(SEQUENTIAL_ISSUANCES)]
        repeated = sorted({s for s in serials if serials.count(s) > 1})
        assert not repeated, f"serials issued more than once: {[hex(s) for s in repeated]}"
        assert all(0 < s <= MAX_SERIAL for s in serials)

    async def test_not_before_is_not_in_the_future(self, issuer: GuardedIssuer) -> None:
        issued = await issuer.issue(_dns())
        now = _now()
        assert issued.not_before <= now + CLOCK_TOLERANCE, (
            f"NotBefore {issued.not_before.isoformat()} is ahead of now ({now.isoformat()})"
        )
        assert issued.not_after > now, "the certificate is already expired"

    async def test_requested_validity_is_honoured(self, issuer: GuardedIssuer) -> None:
        validity = dt.timedelta(hours=2)
        start = _now()
        issued = await issuer.issue(
            _request(SubjectAltNames(dns=("ttl.contract.test",)), validity=validity)
        )
        assert issued.not_after <= start + validity + CLOCK_TOLERANCE, (
            f"asked for {validity}, NotAfter is {issued.not_after.isoformat()}"
        )

    async def test_profile_max_ttl_shorter_than_default_is_honoured(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        default = live_issuer.default_validity or dt.timedelta(hours=24)
        max_ttl = max(min(default / 2, dt.timedelta(hours=1)), dt.timedelta(minutes=10))
        profile = Profile(name="contract-short", max_ttl=max_ttl)
        start = _now()
        issued = await issuer.issue(
            _request(SubjectAltNames(dns=("maxttl.contract.test",)), profile=profile)
        )
        assert issued.not_after <= start + max_ttl + CLOCK_TOLERANCE, (
            f"profile max_ttl {max_ttl} (CA default {default}) ignored: "
            f"NotAfter is {issued.not_after.isoformat()}"
        )

    # -- bad requests --------------------------------------------------------------------

    @pytest.mark.parametrize("garbage", [b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\n"])
    async def test_garbage_csr_is_rejected_with_invalid_request(self, garbage: bytes) -> None:
        with _raises(InvalidRequestError, "CertificateRequest.from_pem(garbage)"):
            CertificateRequest.from_pem(garbage)

    # -- revocation ----------------------------------------------------------------------

    async def test_revoking_twice_reports_already_revoked(self, issuer: GuardedIssuer) -> None:
        issued = await issuer.issue(_dns())
        first = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        assert first.serial == issued.serial
        assert not first.already_revoked, "a first revoke reported already_revoked=True"
        again = await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        assert again.already_revoked, "a repeated revoke must return already_revoked=True"
        assert again.serial == issued.serial

    async def test_fresh_certificate_has_status_good(self, issuer: GuardedIssuer) -> None:
        self.require(issuer, "status")
        issued = await issuer.issue(_dns())
        status = await issuer.status(issued.serial)
        assert status.serial == issued.serial
        assert status.state == "good", f"a fresh certificate has status {status.state!r}"

    async def test_revoked_certificate_has_status_revoked(self, issuer: GuardedIssuer) -> None:
        self.require(issuer, "status")
        issued = await issuer.issue(_dns())
        await issuer.revoke(issued.serial, RevocationReason.SUPERSEDED)
        status = await issuer.status(issued.serial)
        assert status.serial == issued.serial
        assert status.state == "revoked", f"a revoked certificate has status {status.state!r}"

    async def test_revoked_certificate_is_listed_in_crl(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        self.require(issuer, "crl")
        issued = await issuer.issue(_dns())
        signers = (*issued.chain[1:], *live_issuer.trust_anchors)
        before = checks.crl_entry(await issuer.crl(), issued.serial, signers)
        assert before is None, "the CRL lists a certificate that was never revoked"
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        entry = checks.crl_entry(await issuer.crl(), issued.serial, signers)
        assert entry is not None, f"serial {issued.serial:#x} is revoked but not in the CRL"

    async def test_ocsp_reports_good_then_revoked(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        self.require(issuer, "ocsp")
        issued = await issuer.issue(_dns())
        ca = checks.issuer_of(issued.certificate, (*issued.chain[1:], *live_issuer.trust_anchors))
        request = checks.ocsp_request_der(issued.certificate, ca)
        good = checks.ocsp_single_response(await issuer.ocsp(request), issued.certificate, ca)
        assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        bad = checks.ocsp_single_response(await issuer.ocsp(request), issued.certificate, ca)
        assert bad.certificate_status == ocsp.OCSPCertStatus.REVOKED

    async def test_undeclared_capabilities_raise_unsupported(self, issuer: GuardedIssuer) -> None:
        declared = issuer.capabilities.names()
        for capability in CAPABILITY_NAMES:
            if capability in declared:
                continue
            with _raises(UnsupportedCapabilityError, f"undeclared capability {capability}"):
                await issuer.optional(capability)

    # -- health --------------------------------------------------------------------------

    async def test_check_reports_a_healthy_ca(self, issuer: GuardedIssuer) -> None:
        report = await issuer.check()
        assert isinstance(report, HealthReport)
        assert report.ok, f"check() against a live CA is not ok: {report.as_dict()}"

    # -- concurrency, cancellation, close ------------------------------------------------

    async def test_concurrent_issuances_all_succeed_with_unique_serials(
        self, issuer: GuardedIssuer
    ) -> None:
        requests = [_dns(f"c{i}.contract.test") for i in range(CONCURRENT_ISSUANCES)]
        results = await asyncio.gather(*(issuer.issue(r) for r in requests))
        serials = [issued.serial for issued in results]
        assert len(set(serials)) == CONCURRENT_ISSUANCES, (
            f"{CONCURRENT_ISSUANCES - len(set(serials))} repeated serial(s) among "
            f"{CONCURRENT_ISSUANCES} concurrent issuances"
        )
        for request, issued in zip(requests, results, strict=True):
            assert issued.sans.same_as(request.sans), "a certificate went to the wrong request"

    async def test_cancelled_issue_leaves_no_task_behind(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        _unclosed_resources()  # whatever earlier tests left is not this test's concern
        me = asyncio.current_task()
        before = asyncio.all_tasks()
        for spins in (0, 1, 3, 10):
            task = asyncio.create_task(issuer.raw.issue(_dns()))
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a task that finished before the cancel is fine too
        leftover: set[asyncio.Task[Any]] = set()
        for _ in range(100):  # give cleanup up to ~1 s to finish
            leftover = asyncio.all_tasks() - before - {me}
            if not leftover:
                break
            await asyncio.sleep(0.01)
        assert not leftover, f"tasks left behind after cancelling issue(): {leftover}"
        await issuer.issue(_dns())  # still usable after cancellations
        await issuer.close()
        if live_issuer.open_connections is not None:
            count = live_issuer.open_connections()
            assert count == 0, f"{count} connection(s) to the CA still open after close()"
        unclosed = _unclosed_resources()
        assert not unclosed, f"resources left open after cancellations and close(): {unclosed}"

    async def test_close_twice_is_harmless(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        _unclosed_resources()
        await issuer.issue(_dns())
        await issuer.close()
        await issuer.close()
        if live_issuer.open_connections is not None:
            count = live_issuer.open_connections()
            assert count == 0, f"{count} connection(s) to the CA still open after close()"
        unclosed = _unclosed_resources()
        assert not unclosed, f"resources left open after close(): {unclosed}"

    async def test_calls_after_close_raise_issuer_closed(self, issuer: GuardedIssuer) -> None:
        issued = await issuer.issue(_dns())
        await issuer.close()
        with _raises(IssuerClosedError, "issue() after close()"):
            await issuer.issue(_dns())
        with _raises(IssuerClosedError, "revoke() after close()"):
            await issuer.revoke(issued.serial)
        with _raises(IssuerClosedError, "ca_chain() after close()"):
            await issuer.ca_chain()
        with _raises(IssuerClosedError, "check() after close()"):
            await issuer.check()
        for capability in issuer.capabilities.names():
            with _raises(IssuerClosedError, f"{capability}() after close()"):
                await issuer.optional(capability, issued.serial)

    # -- secrets and foreign exceptions --------------------------------------------------

    async def test_secrets_never_appear_in_repr_str_errors_or_logs(
        self,
        issuer: GuardedIssuer,
        live_issuer: LiveIssuer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        issued = await issuer.issue(_request(CONTRACT_SANS))
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        report = await issuer.check()
        for capability in issuer.capabilities.names():
            with contextlib.suppress(CertctlError):
                await issuer.optional(capability, issued.serial)
        with contextlib.suppress(CertctlError):  # provoked errors
            await issuer.issue(_request(CONTRACT_SANS, validity=dt.timedelta(days=36500)))
        with contextlib.suppress(CertctlError):
            await issuer.revoke(0)
        await issuer.close()
        with contextlib.suppress(CertctlError):
            await issuer.issue(_dns())
        texts = {
            "repr(issuer)": repr(issuer.raw),
            "str(issuer)": str(issuer.raw),
            "check() report": repr(report.as_dict()),
        }
        for i, exc in enumerate(issuer.errors):
            texts[f"error {i} ({type(exc).__name__})"] = " | ".join(
                map(str, (exc, repr(exc), exc.args, exc.hint, getattr(exc, "ca_message", None)))
            )
        for i, record in enumerate(caplog.records):
            formatted = caplog.handler.format(record)
            texts[f"log record {i} ({record.name})"] = f"{record.getMessage()} {formatted}"
        for secret in live_issuer.secrets:
            leaks = [where for where, text in texts.items() if secret in text]
            assert not leaks, f"a configured secret appears in: {', '.join(leaks)}"

    @pytest.mark.parametrize("serial", [0, -1, 1 << 200], ids=["zero", "negative", "huge"])
    async def test_odd_serials_raise_only_certctl_errors(
        self, issuer: GuardedIssuer, serial: int
    ) -> None:
        with _raises(PermanentError, f"revoke({serial})"):
            await issuer.revoke(serial)
        if "status" in issuer.capabilities.names():
            with _raises(PermanentError, f"status({serial})"):
                await issuer.status(serial)

    async def test_revoking_a_never_issued_serial_raises_only_certctl_errors(
        self, issuer: GuardedIssuer
    ) -> None:
        # The CA may refuse (a CertctlError) or record the revocation; both are fine.
        # The guard fails the test if anything else escapes.
        serial = x509.random_serial_number()
        with contextlib.suppress(CertctlError):
            await issuer.revoke(serial)
        if "status" in issuer.capabilities.names():
            with contextlib.suppress(CertctlError):
                await issuer.status(serial)

    async def test_csr_without_names_raises_only_certctl_errors(
        self, issuer: GuardedIssuer
    ) -> None:
        # Issuing or refusing are both fine; anything but a CertctlError is not.
        with contextlib.suppress(CertctlError):
            await issuer.issue(_request(SubjectAltNames()))
