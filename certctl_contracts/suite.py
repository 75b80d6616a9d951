"""The issuer contract suite: one set of tests every certctl connector must pass.

Use it by subclassing :class:`IssuerContract` in a test module and overriding one
fixture, ``live_issuer``::

    from certctl_contracts import IssuerContract

    class TestMyIssuer(IssuerContract):
        @pytest.fixture
        async def live_issuer(self, tmp_path):
            async with my_harness(tmp_path) as live:  # yields a LiveIssuer
                yield live

The class is not named ``Test*`` so it never runs on its own. Tests that need an
optional capability (``crl``, ``ocsp``, ``status``) are skipped, with a reason naming the
adapter and the capability, when the adapter does not declare it; each undeclared
capability is itself tested to raise UnsupportedCapabilityError. Results are checked
through a side channel (``cryptography``), never by asking the adapter. Every call goes
through a guard that fails the test if anything but a CertctlError escapes, or if the
call does not return within :attr:`IssuerContract.call_timeout` seconds. Logs are captured
at DEBUG and tasks snapshotted from before ``live_issuer`` (hence the factory) runs.

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
import traceback
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
    RenewalWindow,
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
    TransientError,
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
    "Watch",
    "IssuerContract",
    "describe",
]

T = TypeVar("T")

#: The optional capabilities a connector may declare.
CAPABILITY_NAMES = ("crl", "ocsp", "status", "renewal_info")
#: Issuances run at once by the concurrency test.
CONCURRENT_ISSUANCES = 50
#: Issuances run one after another by the serial tests (entropy needs about 24).
SEQUENTIAL_ISSUANCES = 24
#: Default upper bound for one call to the adapter; a hung adapter fails instead of
#: hanging. Override ``IssuerContract.call_timeout`` for a slow CA.
CALL_TIMEOUT = 30.0
#: How long the slow() fault delays each call to the CA.
SLOW_SECONDS = 1.0
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
    A call that does not return within ``timeout`` seconds fails the test, naming it.
    """

    def __init__(self, issuer: IssuerPort, timeout: float = CALL_TIMEOUT) -> None:
        self.raw = issuer
        self.timeout = timeout
        self.errors: list[CertctlError] = []

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        timed_out = False
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await awaitable
                except asyncio.CancelledError:
                    timed_out = True
                    raise
        except CertctlError as exc:
            self.errors.append(exc)
            raise
        except TimeoutError as exc:
            if not timed_out:  # the adapter's own TimeoutError: foreign
                _foreign(what, self.raw, exc)
            pytest.fail(
                f"{describe(self.raw)}.{what} did not return within {self.timeout}s: a "
                "deadlock (a lock or event never released) or a call to the CA without a "
                "timeout of its own"
            )
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

    async def renewal_info(self, certificate: x509.Certificate) -> RenewalWindow:
        method = getattr(self.raw, "renewal_info", None)
        if method is None and not self.raw.capabilities.renewal_info:
            # A connector written before renewal_info joined the port has no method for
            # it: the capability is simply absent, as for IssuerBase's default.
            raise UnsupportedCapabilityError("renewal_info")
        return await self._call("renewal_info()", self.raw.renewal_info(certificate))

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
        if capability == "renewal_info":
            return await self.renewal_info(checks.stray_certificate(max(serial, 1)))
        raise AssertionError(f"unknown capability {capability!r}")


def _request(
    sans: SubjectAltNames,
    *,
    profile: Profile | None = None,
    validity: dt.timedelta | None = None,
    key_kind: KeyKind = "ec-p256",
    common_name: str | None = None,
) -> CertificateRequest:
    """A request for ``sans``; its subject CN is the first DNS name unless given."""
    if common_name is None and sans.dns:
        common_name = sans.dns[0]
    csr, _key = build_csr(sans, common_name=common_name, key=new_private_key(key_kind))
    return CertificateRequest.from_csr(csr, profile=profile, validity=validity)


def _sans_for(live_issuer: LiveIssuer) -> SubjectAltNames:
    """:data:`CONTRACT_SANS` restricted to the SAN types the harness's CA certifies."""
    kinds = live_issuer.san_types
    ips = CONTRACT_SANS.ips if "ip" in kinds else ()
    if "ipv4" in kinds and "ip" not in kinds:
        ips = tuple(ip for ip in CONTRACT_SANS.ips if ip.version == 4)
    return SubjectAltNames(
        dns=CONTRACT_SANS.dns if "dns" in kinds else (),
        ips=ips,
        emails=CONTRACT_SANS.emails if "email" in kinds else (),
        uris=CONTRACT_SANS.uris if "uri" in kinds else (),
    )


def _dns(name: str = "svc.contract.test", profile: Profile | None = None) -> CertificateRequest:
    return _request(SubjectAltNames(dns=(name,)), common_name=name, profile=profile)


class _Records(logging.Handler):
    """Keeps every record, formatted with its traceback, for the secrets test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[tuple[str, str]] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.getMessage()} {self.format(record)}"
        except Exception as exc:  # noqa: BLE001 - a record that cannot be formatted
            text = f"<unformattable record: {exc}>"
        self.texts.append((record.name, text))


class Watch:
    """What the suite observes from before the factory runs: log records and tasks."""

    def __init__(self, tasks: set[asyncio.Task[Any]], logs: _Records) -> None:
        self.tasks_before = tasks
        self.logs = logs

    async def new_tasks(self, settle: float = 1.0) -> set[asyncio.Task[Any]]:
        """Tasks started since the snapshot that are still running after ``settle`` s."""
        me = asyncio.current_task()
        leftover: set[asyncio.Task[Any]] = set()
        for _ in range(max(1, int(settle / 0.01))):
            leftover = {
                t
                for t in asyncio.all_tasks() - self.tasks_before - {me}
                if not t.done() and not _is_test_runner(t)
            }
            if not leftover:
                break
            await asyncio.sleep(0.01)
        return leftover


def _is_test_runner(task: asyncio.Task[Any]) -> bool:
    """The test framework's own task running this test (anyio's runner)."""
    return "TestRunner" in getattr(task.get_coro(), "__qualname__", "")


def _error_text(exc: BaseException) -> str:
    """Everything an error would show: message, repr, args, hint, and the traceback
    with every ``__cause__`` and ``__context__``, their messages and arguments."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        parts += [str(getattr(current, name, "")) for name in ("hint", "ca_message")]
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


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


async def _settle(issuer: GuardedIssuer) -> None:
    """Wait (briefly) until the CA works again after a fault."""
    for _ in range(50):
        with contextlib.suppress(CertctlError):
            if (await issuer.check()).ok:
                return
        await asyncio.sleep(0.1)


@pytest.mark.anyio
class IssuerContract:
    """The contract every issuer connector satisfies. Subclass it as ``Test<Something>``.

    Override ``live_issuer`` (a fixture yielding :class:`LiveIssuer`); nothing else is
    required. The suite closes the issuer after each test (closing twice is harmless by
    contract); the fixture should stop whatever it started. ``call_timeout`` bounds each
    call to the adapter.
    """

    call_timeout: float = CALL_TIMEOUT

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The suite runs on asyncio; authors need no conftest."""
        return "asyncio"

    @pytest.fixture(autouse=True)
    async def contract_watch(self) -> AsyncIterator[Watch]:
        """Logs at DEBUG and a task snapshot, from before ``live_issuer`` (autouse
        fixtures are set up first) until teardown."""
        handler = _Records()
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            yield Watch(set(asyncio.all_tasks()), handler)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)

    @pytest.fixture
    def live_issuer(self) -> LiveIssuer:
        """Override me: yield a LiveIssuer connected to a live CA (see the module doc)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the 'live_issuer' fixture to yield a "
            "certctl_contracts.LiveIssuer (adapter, root, connector type, config, "
            "is_revoked, rebuild, faults); see docs/contract-suite.md"
        )

    @pytest.fixture
    async def issuer(self, live_issuer: LiveIssuer) -> AsyncIterator[GuardedIssuer]:
        """The adapter behind the foreign-exception guard; closed after the test.

        A close() that fails here is not reported (the close tests report it), so that a
        broken close() is one failure, not one teardown error per test.
        """
        if not isinstance(live_issuer, LiveIssuer):
            pytest.fail(f"live_issuer yielded {type(live_issuer).__name__}, not LiveIssuer")
        guarded = GuardedIssuer(live_issuer.issuer, self.call_timeout)
        yield guarded
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.call_timeout):
                await live_issuer.issuer.close()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def require(issuer: GuardedIssuer, capability: str) -> None:
        """Skip the test, naming adapter and capability, unless ``capability`` is declared."""
        if capability not in issuer.capabilities.names():
            pytest.skip(
                f"{describe(issuer.raw)} does not declare capability {capability!r} "
                "(its absence is checked by test_undeclared_capabilities_raise_unsupported)"
            )

    @staticmethod
    def profiles(live_issuer: LiveIssuer) -> dict[str, frozenset[x509.ObjectIdentifier]]:
        """The harness's profile -> EKUs map; ``default`` must be there."""
        profiles = dict(live_issuer.profile_ekus)
        if "default" not in profiles:
            pytest.fail("the harness's profile_ekus lacks the 'default' profile")
        return profiles

    # -- the connector type ----------------------------------------------------------------

    async def test_connector_type_describes_the_connector(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        kind = live_issuer.connector_type
        extra = set(issuer.capabilities.names()) - set(kind.capabilities.names())
        assert not extra, (
            f"the connector offers {sorted(extra)} but ConnectorType {kind.name!r} declares "
            f"only {list(kind.capabilities.names())}: hosts decide from the type what to "
            "offer (a built connector may offer fewer, never more)"
        )
        secret_values = set(live_issuer.secrets)
        missing = sorted(
            key
            for key, value in live_issuer.config.items()
            if isinstance(value, str)
            and (
                any(secret and secret in value for secret in secret_values)
                or (
                    any(word in key.lower() for word in ("password", "token", "secret"))
                    and not key.lower().endswith(("_file", "_path", "_env"))
                )
            )
        )
        uncovered = [key for key in missing if key not in kind.secret_fields]
        assert not uncovered, (
            f"config keys {uncovered} hold secrets but ConnectorType {kind.name!r} "
            f"secret_fields is {sorted(kind.secret_fields)}: hosts would store and show "
            "them in clear"
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

    async def test_sans_of_all_four_types_are_as_requested(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        wanted = _sans_for(live_issuer)
        issued = await issuer.issue(_request(wanted))
        got = SubjectAltNames.of(issued.certificate)
        assert got.same_as(wanted), f"asked for {wanted}, got {got}"

    async def test_leaf_content_is_as_requested_for_every_profile(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        wanted = _sans_for(live_issuer)
        for name, ekus in sorted(self.profiles(live_issuer).items()):
            profile = None if name == "default" else Profile(name=name)
            request = _request(wanted, profile=profile)
            issued = await issuer.issue(request)
            checks.check_leaf_content(
                issued.certificate,
                common_name=request.common_name,
                sans=wanted,
                ekus=ekus,
                profile=name,
            )

    async def test_issued_chain_is_in_order_without_the_root(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        issued = await issuer.issue(_dns())
        assert issued.chain[0] == issued.certificate, "chain[0] must be the leaf"
        checks.check_chain_order(issued.chain, live_issuer.root)

    async def test_chain_verifies_to_trust_anchor_for_dns_and_ip(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        issued = await issuer.issue(_request(_sans_for(live_issuer)))
        assert issued.chain[0] == issued.certificate, "chain[0] must be the leaf"
        anchors = live_issuer.trust_anchors
        path = checks.verify_for_server(issued, anchors, x509.DNSName(CONTRACT_SANS.dns[0]))
        assert path[-1] in anchors
        for ip in _sans_for(live_issuer).ips:
            checks.verify_for_server(issued, anchors, x509.IPAddress(ip))

    async def test_chain_verifies_to_trust_anchor_for_email_and_uri_only(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        sans = SubjectAltNames(emails=CONTRACT_SANS.emails, uris=CONTRACT_SANS.uris)
        if not {"email", "uri"} <= live_issuer.san_types:
            with _raises(InvalidRequestError, "issue() of SAN types the CA cannot certify"):
                await issuer.issue(_request(sans))
            return
        issued = await issuer.issue(_request(sans))
        path, names = checks.verify_for_client(issued, live_issuer.trust_anchors)
        assert path[-1] in live_issuer.trust_anchors
        assert SubjectAltNames.from_extension(x509.SubjectAlternativeName(names)).same_as(sans)

    async def test_ca_chain_ends_at_the_root(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        chain = await issuer.ca_chain()
        assert chain, "ca_chain() returned no certificates"
        assert chain[-1] == live_issuer.root, (
            f"ca_chain() must end with the CA's root {live_issuer.root.subject.rfc4514_string()}"
            f" (root last), it ends with {chain[-1].subject.rfc4514_string()}"
        )
        if len(chain) > 1:
            checks.check_chain_order(chain[:-1], live_issuer.root)
        issued = await issuer.issue(_dns())
        names = [c.subject.rfc4514_string() for c in chain]
        assert any(c.subject == issued.certificate.issuer for c in chain), (
            f"ca_chain() {names} lacks the leaf's issuer "
            f"{issued.certificate.issuer.rfc4514_string()}: it must be the issuing chain, "
            "intermediates first and root last"
        )

    async def test_serials_are_unique_random_and_at_most_20_octets(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        serials = [(await issuer.issue(_dns())).serial for _ in range(SEQUENTIAL_ISSUANCES)]
        repeated = sorted({s for s in serials if serials.count(s) > 1})
        assert not repeated, f"serials issued more than once: {[hex(s) for s in repeated]}"
        bad = [hex(s) for s in serials if not 0 < s <= MAX_SERIAL]
        assert not bad, f"serials {bad} break RFC 5280 (positive, at most 20 octets)"
        checks.check_serial_entropy(serials, live_issuer.serial_entropy_bits)

    async def test_serials_are_unique_across_a_rebuild_on_the_same_ca(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        first = [(await issuer.issue(_dns())).serial for _ in range(3)]
        await issuer.close()
        second = GuardedIssuer(await live_issuer.rebuild(), self.call_timeout)
        try:
            again = [(await second.issue(_dns())).serial for _ in range(3)]
        finally:
            await second.close()
        repeated = sorted(set(first) & set(again))
        assert not repeated, (
            f"a second connector on the same CA state issued serials {list(map(hex, repeated))}"
            " again: serials must be random (or kept in the CA's state), not counted per "
            "connector"
        )

    async def test_not_before_is_not_in_the_future(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        issued = await issuer.issue(_dns())
        returned = _now()
        latest = returned + live_issuer.clock_skew
        assert issued.not_before <= latest, (
            f"NotBefore {issued.not_before.isoformat()} is after the moment issue() "
            f"returned ({returned.isoformat()}) plus the declared clock skew "
            f"{live_issuer.clock_skew}: the certificate is not yet valid when handed out"
        )
        assert issued.not_after > returned, "the certificate is already expired"

    async def test_requested_validity_is_honoured(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        validity = dt.timedelta(hours=2)
        start = _now()
        issued = await issuer.issue(
            _request(SubjectAltNames(dns=("ttl.contract.test",)), validity=validity)
        )
        end = _now()
        assert issued.not_after <= end + validity + CLOCK_TOLERANCE, (
            f"asked for {validity}, NotAfter is {issued.not_after.isoformat()}"
        )
        if live_issuer.honours_lifetime:
            earliest = start + validity - live_issuer.lifetime_tolerance
            assert issued.not_after >= earliest, (
                f"asked for {validity}, got a certificate ending {issued.not_after.isoformat()}"
                f", before {earliest.isoformat()} (requested minus the declared tolerance "
                f"{live_issuer.lifetime_tolerance})"
            )

    async def test_profile_max_ttl_shorter_than_default_is_honoured(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        default = live_issuer.default_validity or dt.timedelta(hours=24)
        max_ttl = max(min(default / 2, dt.timedelta(hours=1)), dt.timedelta(minutes=10))
        profile = Profile(name="default", max_ttl=max_ttl)
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

    async def test_revocation_is_recorded_by_the_ca_with_its_reason(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        target = await issuer.issue(_dns("target.contract.test"))
        bystander = await issuer.issue(_dns("bystander.contract.test"))
        assert await live_issuer.is_revoked(target.serial) is None, (
            "the CA's state shows a fresh certificate as revoked"
        )
        await issuer.revoke(target.serial, RevocationReason.KEY_COMPROMISE)
        recorded = await live_issuer.is_revoked(target.serial)
        assert recorded is not None, (
            f"revoke({target.serial:#x}) returned, but the CA holds no revocation of it "
            "(was another serial revoked, e.g. hex read as decimal?)"
        )
        if live_issuer.records_reasons:
            assert recorded is RevocationReason.KEY_COMPROMISE, (
                f"revoked for keyCompromise, the CA recorded {recorded.rfc_name}: "
                "the reason was not sent"
            )
        assert await live_issuer.is_revoked(bystander.serial) is None, (
            "revoking one serial revoked another certificate too"
        )

    async def test_revoking_a_never_issued_serial_is_refused_or_recorded(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        serial = x509.random_serial_number()
        try:
            await issuer.revoke(serial, RevocationReason.SUPERSEDED)
        except CertctlError:
            assert await live_issuer.is_revoked(serial) is None
            return
        assert await live_issuer.is_revoked(serial) is not None, (
            f"revoke({serial:#x}) of a never-issued serial reported success, but the CA "
            "recorded nothing: refuse it (RejectedError / InvalidRequestError) instead"
        )

    async def test_fresh_certificate_has_status_good(self, issuer: GuardedIssuer) -> None:
        self.require(issuer, "status")
        issued = await issuer.issue(_dns())
        status = await issuer.status(issued.serial)
        assert status.serial == issued.serial
        assert status.state == "good", f"a fresh certificate has status {status.state!r}"

    async def test_never_issued_serial_has_status_unknown(self, issuer: GuardedIssuer) -> None:
        self.require(issuer, "status")
        serial = x509.random_serial_number()
        status = await issuer.status(serial)
        assert status.state == "unknown", (
            f"a serial this CA never issued has status {status.state!r}, not 'unknown'"
        )

    async def test_revoked_certificate_has_status_revoked(self, issuer: GuardedIssuer) -> None:
        self.require(issuer, "status")
        issued = await issuer.issue(_dns())
        await issuer.revoke(issued.serial, RevocationReason.SUPERSEDED)
        status = await issuer.status(issued.serial)
        assert status.serial == issued.serial
        assert status.state == "revoked", f"a revoked certificate has status {status.state!r}"
        assert status.reason is RevocationReason.SUPERSEDED, (
            f"revoked for superseded, status() says {status.reason}"
        )

    async def test_revoked_certificate_is_listed_in_crl(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        self.require(issuer, "crl")
        issued = await issuer.issue(_dns())
        signers = (*issued.chain[1:], live_issuer.root)
        before = checks.crl_entry(await issuer.crl(), issued.serial, signers)
        assert before is None, "the CRL lists a certificate that was never revoked"
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        entry = checks.crl_entry(await issuer.crl(), issued.serial, signers)
        assert entry is not None, f"serial {issued.serial:#x} is revoked but not in the CRL"
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            reason = None
        assert reason is x509.ReasonFlags.key_compromise, (
            f"revoked for keyCompromise, the CRL entry's reason is {reason}"
        )

    async def test_ocsp_reports_good_then_revoked(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        self.require(issuer, "ocsp")
        issued = await issuer.issue(_dns())
        ca = checks.issuer_of(issued.certificate, (*issued.chain[1:], live_issuer.root))
        request = checks.ocsp_request_der(issued.certificate, ca)
        good = checks.ocsp_single_response(await issuer.ocsp(request), issued.certificate, ca)
        assert good.certificate_status == ocsp.OCSPCertStatus.GOOD
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        bad = checks.ocsp_single_response(await issuer.ocsp(request), issued.certificate, ca)
        assert bad.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert bad.revocation_reason is x509.ReasonFlags.key_compromise, (
            f"revoked for keyCompromise, OCSP says {bad.revocation_reason}"
        )

    async def test_ocsp_never_says_good_for_a_never_issued_serial(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        self.require(issuer, "ocsp")
        issued = await issuer.issue(_dns())
        ca = checks.issuer_of(issued.certificate, (*issued.chain[1:], live_issuer.root))
        der = await issuer.ocsp(checks.ocsp_request_for_serial(ca, x509.random_serial_number()))
        response = ocsp.load_der_ocsp_response(der)
        if response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
            assert response.certificate_status != ocsp.OCSPCertStatus.GOOD, (
                "OCSP says 'good' for a serial this CA never issued"
            )

    async def test_renewal_window_lies_within_the_certificates_validity(
        self, issuer: GuardedIssuer
    ) -> None:
        self.require(issuer, "renewal_info")
        issued = await issuer.issue(_dns())
        window = await issuer.renewal_info(issued.certificate)
        assert isinstance(window, RenewalWindow)
        assert window.start <= window.end, f"renewal window {window} ends before it starts"
        assert issued.not_before - CLOCK_TOLERANCE <= window.start, (
            f"renewal window starts {window.start.isoformat()}, before the certificate's "
            f"NotBefore {issued.not_before.isoformat()}"
        )
        assert window.end <= issued.not_after + CLOCK_TOLERANCE, (
            f"renewal window ends {window.end.isoformat()}, after the certificate expires "
            f"({issued.not_after.isoformat()})"
        )

    async def test_undeclared_capabilities_raise_unsupported(self, issuer: GuardedIssuer) -> None:
        declared = issuer.capabilities.names()
        for capability in CAPABILITY_NAMES:
            if capability in declared:
                continue
            with _raises(UnsupportedCapabilityError, f"undeclared capability {capability}"):
                await issuer.optional(capability)

    # -- health and faults ---------------------------------------------------------------

    async def test_check_reports_a_healthy_ca(self, issuer: GuardedIssuer) -> None:
        report = await issuer.check()
        assert isinstance(report, HealthReport)
        assert report.ok, f"check() against a live CA is not ok: {report.as_dict()}"

    async def test_unreachable_ca_is_reported_by_check_and_transient(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        async with live_issuer.faults.unreachable():
            report = await issuer.check()  # raising fails here: check() reports, never raises
            assert not report.ok, (
                f"check() says ok while the CA is unreachable: it must probe the CA "
                f"({report.as_dict()})"
            )
            with _raises(TransientError, "issue() while the CA is unreachable"):
                await issuer.issue(_dns())
        await _settle(issuer)
        await issuer.issue(_dns())  # works again

    async def test_erroring_ca_gives_transient_errors_with_retry_after(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        async with live_issuer.faults.erroring():
            try:
                await issuer.issue(_dns())
            except TransientError as exc:
                if exc.retry_after is None:
                    pytest.fail(
                        f"{type(exc).__name__} without retry_after for a temporary CA failure"
                    )
            except CertctlError as exc:
                pytest.fail(
                    f"a temporary CA failure raised {type(exc).__name__} ({exc}); it must "
                    "be a TransientError with retry_after"
                )
            else:
                pytest.fail("issue() succeeded while the CA was failing")
        await _settle(issuer)

    async def test_slow_ca_is_waited_for(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer
    ) -> None:
        async with live_issuer.faults.slow(SLOW_SECONDS):
            with contextlib.suppress(TransientError):
                await issuer.issue(_dns())
            report = await issuer.check()
            assert isinstance(report, HealthReport)

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
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer, contract_watch: Watch
    ) -> None:
        _unclosed_resources()  # whatever earlier tests left is not this test's concern
        before = Watch(set(asyncio.all_tasks()), contract_watch.logs)
        for spins in (0, 1, 3, 10):
            task = asyncio.create_task(issuer.raw.issue(_dns()))
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a task that finished before the cancel is fine too
        leftover = await before.new_tasks()
        assert not leftover, f"tasks left behind after cancelling issue(): {leftover}"
        await issuer.issue(_dns())  # still usable after cancellations
        await issuer.close()
        leftover = await contract_watch.new_tasks()
        assert not leftover, f"tasks left running after cancellations and close(): {leftover}"
        if live_issuer.open_connections is not None:
            count = live_issuer.open_connections()
            assert count == 0, f"{count} connection(s) to the CA still open after close()"
        unclosed = _unclosed_resources()
        assert not unclosed, f"resources left open after cancellations and close(): {unclosed}"

    async def test_close_twice_is_harmless_and_stops_every_task(
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer, contract_watch: Watch
    ) -> None:
        _unclosed_resources()
        await issuer.issue(_dns())
        await issuer.check()
        await issuer.close()
        await issuer.close()
        leftover = await contract_watch.new_tasks()
        assert not leftover, (
            f"tasks started since before the connector was built still run after close(): "
            f"{leftover}"
        )
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
        self, issuer: GuardedIssuer, live_issuer: LiveIssuer, contract_watch: Watch
    ) -> None:
        issued = await issuer.issue(_request(_sans_for(live_issuer)))
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        await issuer.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        report = await issuer.check()
        for capability in issuer.capabilities.names():
            with contextlib.suppress(CertctlError):
                await issuer.optional(capability, issued.serial)
        with contextlib.suppress(CertctlError):  # provoked errors
            await issuer.issue(_request(_sans_for(live_issuer), validity=dt.timedelta(days=36500)))
        with contextlib.suppress(CertctlError):
            await issuer.revoke(0)
        with contextlib.suppress(CertctlError):
            await issuer.revoke(x509.random_serial_number())
        async with live_issuer.faults.erroring():
            with contextlib.suppress(CertctlError):
                await issuer.issue(_dns())
        await _settle(issuer)
        await issuer.close()
        with contextlib.suppress(CertctlError):
            await issuer.issue(_dns())
        texts = {
            "repr(issuer)": repr(issuer.raw),
            "str(issuer)": str(issuer.raw),
            "check() report": repr(report.as_dict()),
        }
        for i, exc in enumerate(issuer.errors):
            texts[f"error {i} ({type(exc).__name__}, with its causes)"] = _error_text(exc)
        for i, (name, text) in enumerate(contract_watch.logs.texts):
            texts[f"log record {i} ({name})"] = text
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

    async def test_csr_without_names_raises_only_certctl_errors(
        self, issuer: GuardedIssuer
    ) -> None:
        # Issuing or refusing are both fine; anything but a CertctlError is not.
        with contextlib.suppress(CertctlError):
            await issuer.issue(_request(SubjectAltNames()))
