"""Helpers for the PKI endpoint tests: files for openssl and the OCSP client runs."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from tests.server.conftest import Server, openssl


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class OCSPCase:
    """Files for asking the server about one certificate with ``openssl ocsp``."""

    def __init__(self, directory: Path, leaf_pem: str, issuer: x509.Certificate, root: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.leaf = directory / "leaf.pem"
        self.leaf.write_text(leaf_pem)
        self.issuer = directory / "issuer.pem"
        self.issuer.write_bytes(pem(issuer))
        self.root = root

    def post(self, url: str, *, nonce: bool = True) -> str:
        """``openssl ocsp -url`` (POST, with a nonce unless told not to: an answer without
        one may come from the server's cache); returns its output."""
        result = openssl(
            [
                "ocsp",
                "-issuer",
                str(self.issuer),
                "-cert",
                str(self.leaf),
                "-CAfile",
                str(self.root),
                "-url",
                url,
                "-resp_text",
                *([] if nonce else ["-no_nonce"]),
            ]
        )
        return result.stdout + result.stderr

    def get(self, url: str, *, nonce: bool = False) -> tuple[httpx.Response, str]:
        """The RFC 6960 GET form: the request from ``openssl ocsp -reqout``, sent base64
        in the URL, the response checked with ``openssl ocsp -respin``."""
        request = self.directory / "request.der"
        openssl(
            [
                "ocsp",
                "-issuer",
                str(self.issuer),
                "-cert",
                str(self.leaf),
                "-reqout",
                str(request),
                "-nonce" if nonce else "-no_nonce",
            ]
        )
        encoded = quote(base64.b64encode(request.read_bytes()).decode(), safe="")
        response = httpx.get(f"{url}/{encoded}", trust_env=False, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/ocsp-response"
        answer = self.directory / "response.der"
        answer.write_bytes(response.content)
        # -respin with -cert builds its own request: its nonce would not match ours.
        result = openssl(
            [
                "ocsp",
                "-respin",
                str(answer),
                "-issuer",
                str(self.issuer),
                "-cert",
                str(self.leaf),
                "-CAfile",
                str(self.root),
                "-no_nonce",
                "-resp_text",
            ]
        )
        output = result.stdout + result.stderr
        if nonce:
            # Checked against the request we sent: signature, chain and nonce.
            checked = openssl(
                [
                    "ocsp",
                    "-reqin",
                    str(request),
                    "-respin",
                    str(answer),
                    "-CAfile",
                    str(self.root),
                    "-verify_other",
                    str(self.issuer),
                ]
            )
            output += checked.stdout + checked.stderr
            sent = ocsp.load_der_ocsp_request(request.read_bytes())
            got = ocsp.load_der_ocsp_response(response.content)
            assert _nonce(sent.extensions) is not None
            assert _nonce(got.extensions) == _nonce(sent.extensions)
        return response, output


def _nonce(extensions: x509.Extensions) -> bytes | None:
    for ext in extensions:
        if isinstance(ext.value, x509.OCSPNonce):
            return ext.value.nonce
    return None


def status_line(output: str, leaf: Path) -> str:
    """The ``<file>: good|revoked|unknown`` line openssl prints."""
    for line in output.splitlines():
        if line.startswith(f"{leaf}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no status for {leaf} in:\n{output}")


def ocsp_url(server: Server, issuer_id: str) -> str:
    return f"{server.url}/.well-known/pki/ocsp/{issuer_id}"
