"""Test helpers: keyword-friendly wrappers over the contract suite's CSR builders."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl_contracts.csr import PrivateKey, build_csr, new_private_key
from certctl_core import CertificateRequest, Profile, SubjectAltNames


def new_key(kind: str = "ec") -> PrivateKey:
    return new_private_key("rsa-2048" if kind == "rsa" else "ec-p256")


def make_csr(
    *,
    cn: str | None = "app.example.test",
    dns: Sequence[str] = ("app.example.test",),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
    key: PrivateKey | None = None,
) -> x509.CertificateSigningRequest:
    sans = SubjectAltNames(
        dns=tuple(dns),
        ips=tuple(ipaddress.ip_address(i) for i in ips),
        emails=tuple(emails),
        uris=tuple(uris),
    )
    return build_csr(sans, common_name=cn, key=key)[0]


def make_request(profile: Profile | None = None, **kwargs: object) -> CertificateRequest:
    return CertificateRequest.from_csr(make_csr(**kwargs), profile=profile)  # type: ignore[arg-type]


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
