"""Hostile inputs shared by the property tests and the atheris targets.

Each ``check_*`` feeds one input to one parser and returns normally when the outcome is
allowed: a value, or the typed certctl error named in the docstring. Anything else (an
exception from ``ValueError`` to ``RecursionError``) is a bug the caller reports.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from certctl_contracts.reference import ReferenceCA
from certctl_core import (
    CertificateRequest,
    ConfigError,
    InvalidRequestError,
    RevocationReason,
    Secret,
    parse_serial,
)
from certctl_core.domain import MAX_SERIAL
from certctl_core.revocation.ocsp import parse_ocsp_request as parse_request
from certctl_localca._config import LocalCAConfig
from certctl_stepca._keyfile import load_provisioner_key
from certctl_stepca.config import StepCAConfig

__all__ = [
    "check_csr",
    "check_key_file",
    "check_localca_config",
    "check_ocsp_request",
    "check_reason",
    "check_serial",
    "check_stepca_config",
    "seed_csr_der",
    "seed_ocsp_request",
]


def check_stepca_config(raw: Mapping[str, Any]) -> None:
    """StepCAConfig.from_mapping: a config or ConfigError."""
    try:
        config = StepCAConfig.from_mapping(raw, env={})
    except ConfigError:
        return
    assert config.ca_url.startswith("https://")


def check_localca_config(raw: Mapping[str, Any]) -> None:
    """LocalCAConfig.from_mapping: a config or ConfigError."""
    try:
        LocalCAConfig.from_mapping(raw, env={})
    except ConfigError:
        return


def check_key_file(data: bytes, password: str = "hostile") -> None:
    """load_provisioner_key on a file holding ``data``: a key or ConfigError."""
    fd, name = tempfile.mkstemp(prefix="certctl-fuzz-key-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        with contextlib.suppress(ConfigError):
            load_provisioner_key(Path(name), Secret(password))
    finally:
        os.unlink(name)


def check_csr(data: bytes) -> None:
    """CertificateRequest.from_der/from_pem and every accessor: values or
    InvalidRequestError."""
    try:
        request = CertificateRequest.from_der(data)
        _ = (request.sans.as_strings(), request.common_name, request.public_key_der())
        _ = request.csr_pem
    except InvalidRequestError:
        return


def check_ocsp_request(data: bytes) -> None:
    """The Local CA's OCSP request parser: a query or InvalidRequestError."""
    try:
        query = parse_request(data)
    except InvalidRequestError:
        return
    # A negative serial is answered (as unknown: never issued), so it parses.
    assert isinstance(query.serial, int)


def check_serial(text: str | int) -> None:
    """parse_serial: a serial within RFC 5280's 20 octets or InvalidRequestError."""
    try:
        value = parse_serial(text)
    except InvalidRequestError:
        return
    assert 0 < value <= MAX_SERIAL


def check_reason(value: str | int) -> None:
    """RevocationReason.parse: a reason or InvalidRequestError."""
    try:
        RevocationReason.parse(value)
    except InvalidRequestError:
        return


def seed_csr_der() -> bytes:
    """A valid DER CSR with a CN and one SAN of each type, to mutate."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("fuzz.example.test"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.RFC822Name("ops@example.test"),
        x509.UniformResourceIdentifier("spiffe://example.test/fuzz"),
    ]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz.example.test")]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def seed_ocsp_request() -> bytes:
    """A valid DER OCSP request (SHA-256 CertID, nonce) for a throwaway CA, to mutate."""
    ca = ReferenceCA.create("fuzz")
    leaf = ca.sign(ca.intermediate_key.public_key(), serial=0x1234567890ABCDEF)
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca.intermediate, hashes.SHA256())
    builder = builder.add_extension(x509.OCSPNonce(base64.b16decode(b"00" * 16)), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)
