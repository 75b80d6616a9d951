"""An in-memory connector for the core's tests.

:class:`FakeWorld` owns a shipped :class:`~certctl_contracts.reference.ReferenceCA` and
builds :class:`FakeIssuer` generations through :meth:`FakeWorld.factory`. Each generation records
its number (``config["generation"]``), how often ``close()`` was called, and whether it
was closed while one of its calls was still running. ``issue`` sleeps a random short time
and then asserts the connector is still open, so a call that is not served wholly by one
generation fails.

Behaviour knobs, all read from the config:

``generation`` (int)          recorded, and written into each certificate as the OU
``invalid`` (bool)            the factory raises ConfigError (two problems)
``explode`` (bool)            the factory raises RuntimeError (a plugin bug)
``hang`` (bool)               ``issue`` waits forever
``close_raises`` (bool)       ``close()`` raises RuntimeError after counting the call
``extra_seconds`` (int)       the certificate outlives the asked validity by this much
``wrong_key`` (bool)          the certificate certifies a fresh key, not the CSR's
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from certctl_contracts.reference import ReferenceCA
from certctl_core import (
    Capabilities,
    CertificateRequest,
    ConfigError,
    ConfigProblem,
    ConnectorType,
    HealthCheck,
    HealthReport,
    IssuedCertificate,
    IssuerBase,
    Revocation,
    RevocationReason,
)

DEFAULT_VALIDITY = dt.timedelta(hours=24)


def make_csr(
    common_name: str | None = "svc.example.test",
    dns: tuple[str, ...] = ("svc.example.test",),
    key: ed25519.Ed25519PrivateKey | None = None,
) -> x509.CertificateSigningRequest:
    """A CSR signed with ``key`` (a fresh Ed25519 key by default)."""
    key = key or ed25519.Ed25519PrivateKey.generate()
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(key, None)


def tampered_csr_der() -> bytes:
    """DER of a well-formed CSR whose signature's last byte is flipped."""
    der = bytearray(make_csr().public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def generation_of(issued: IssuedCertificate) -> int:
    """The generation a FakeIssuer wrote into the certificate's OU."""
    (ou,) = issued.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    value = ou.value
    assert isinstance(value, str)
    return int(value.removeprefix("generation-"))


class FakeIssuer(IssuerBase):
    """One generation of the fake connector."""

    connector_name = "fake"

    def __init__(self, issuer_id: str, config: Mapping[str, Any], world: FakeWorld) -> None:
        super().__init__(issuer_id)
        self.world = world
        self.config = dict(config)
        self.generation: int = int(config.get("generation", 0))
        self.close_calls = 0
        self.active = 0
        self.served = 0
        self.closed_while_active = False
        self.seen_validities: list[dt.timedelta | None] = []

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    async def issue(self, request: CertificateRequest) -> IssuedCertificate:
        self.ensure_open()
        self.world.issue_calls += 1
        self.seen_validities.append(request.validity)
        self.active += 1
        self.world.issue_started.set()
        try:
            if self.config.get("hang"):
                await asyncio.Event().wait()
            await asyncio.sleep(random.uniform(0, 0.003))
            # The proof that one generation served the whole call: still open at the end.
            assert not self.closed, f"generation {self.generation} closed during a call"
            validity = request.effective_validity(DEFAULT_VALIDITY) + dt.timedelta(
                seconds=int(self.config.get("extra_seconds", 0))
            )
            leaf = self.world.ca.sign(
                self._public_key(request),
                subject=x509.Name(
                    [
                        *request.csr.subject,
                        x509.NameAttribute(
                            NameOID.ORGANIZATIONAL_UNIT_NAME, f"generation-{self.generation}"
                        ),
                    ]
                ),
                sans=request.sans,
                validity=validity,
                backdate=dt.timedelta(0),  # NotAfter - NotBefore is exactly the validity
            )
            self.served += 1
            return IssuedCertificate.from_certificates([leaf, self.world.ca.intermediate])
        finally:
            self.active -= 1

    def _public_key(self, request: CertificateRequest) -> CertificatePublicKeyTypes:
        if self.config.get("wrong_key"):
            return ed25519.Ed25519PrivateKey.generate().public_key()
        return request.csr.public_key()

    async def revoke(
        self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED
    ) -> Revocation:
        self.ensure_open()
        return Revocation(serial=serial, reason=reason)

    async def ca_chain(self) -> tuple[x509.Certificate, ...]:
        self.ensure_open()
        return self.world.ca.chain

    async def check(self) -> HealthReport:
        return HealthReport((HealthCheck("fake", True, f"generation {self.generation}"),))

    async def close(self) -> None:
        self.close_calls += 1
        if self.active:
            self.closed_while_active = True
        await super().close()
        if self.config.get("close_raises"):
            raise RuntimeError("close failed on purpose")


class FakeWorld:
    """The CA, every generation built, and instrumentation of the factory."""

    def __init__(self, *, build_delay: float = 0.0) -> None:
        self.ca = ReferenceCA.create("certctl test")
        self.instances: list[FakeIssuer] = []
        self.build_delay = build_delay
        self.building = 0
        self.overlapping_builds = 0
        self.factory_calls = 0
        self.issue_calls = 0
        self.issue_started = asyncio.Event()

    async def factory(self, issuer_id: str, config: Mapping[str, Any]) -> FakeIssuer:
        self.factory_calls += 1
        self.building += 1
        try:
            if self.building > 1:
                self.overlapping_builds += 1
            await asyncio.sleep(self.build_delay)
            if config.get("invalid"):
                raise ConfigError(
                    [
                        ConfigProblem("url", "is missing", hint="set url"),
                        ConfigProblem("generation", "must be an integer"),
                    ],
                    issuer_id=issuer_id,
                    connector="fake",
                )
            if config.get("explode"):
                raise RuntimeError("factory bug")
            issuer = FakeIssuer(issuer_id, config, self)
            self.instances.append(issuer)
            return issuer
        finally:
            self.building -= 1

    def connector_type(self, name: str = "fake") -> ConnectorType:
        return ConnectorType(name=name, factory=self.factory, version="0.0-test")

    def generation(self, number: int) -> FakeIssuer:
        (issuer,) = [i for i in self.instances if i.generation == number]
        return issuer
