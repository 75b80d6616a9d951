"""Fixtures for the local CA tests: a live connector on a temporary state directory,
CSR factories and a runner for the real ``openssl`` command line."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certctl_localca import LocalCAIssuer, build_localca_issuer

PASSWORD = "correct horse battery staple 42"


def config_for(state_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"state_dir": str(state_dir), "key_password": PASSWORD, **extra}


async def open_ca(state_dir: Path, **extra: Any) -> LocalCAIssuer:
    issuer = await build_localca_issuer("test-ca", config_for(state_dir, **extra))
    assert isinstance(issuer, LocalCAIssuer)
    return issuer


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def ca(state_dir: Path) -> AsyncIterator[LocalCAIssuer]:
    issuer = await open_ca(
        state_dir, crl_url="http://ca.test/crl.der", ocsp_url="http://ca.test/ocsp"
    )
    yield issuer
    await issuer.close()


def make_csr(
    *,
    common_name: str | None = "svc.example.test",
    dns: Sequence[str] = ("svc.example.test",),
    ips: Sequence[str] = (),
    emails: Sequence[str] = (),
    uris: Sequence[str] = (),
    key_type: str = "ec",
) -> x509.CertificateSigningRequest:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.RFC822Name(e) for e in emails]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real openssl binary; never raises for a non-zero exit (tests assert it)."""
    return subprocess.run(
        ["openssl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def write_operator_ca(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> tuple[Path, Path, x509.Certificate]:
    """An operator's CA for ``ca_cert_file``/``ca_key_file``: its certificate (PEM) and
    its key (PKCS#8, encrypted with PASSWORD) written under ``directory``."""
    from certctl_contracts.reference import ca_certificate

    cert = ca_certificate(name, key)
    cert_file = write_pem(directory / "ca.pem", cert)
    key_file = directory / "ca.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return cert_file, key_file, cert
