"""The realistic OCSP mix, for the server and for ``openssl ocsp`` alike.

``count`` certificates issued, ``revoked_fraction`` of them revoked (reasons spread),
requests over every serial in a shuffled order, half with a nonce (as ``openssl ocsp``
sends by default), half without (as RFC 5019 clients and browsers do). The same serials,
the same shuffle and the same nonce split are used for both responders; only the issuer
hashes in the CertID differ (each responder answers for its own CA).

Requests are written for ``wrk``: one hex line per POST body, one path per GET (the RFC
6960 Appendix A form, URL-encoded base64 of the DER request), read by :data:`LUA`.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import secrets
from pathlib import Path
from urllib.parse import quote

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LUA", "Expected", "OpenSSLResponder", "requests_for", "write_wrk_inputs"]

#: wrk script: POST bodies (hex lines) or GET paths (one per line), round-robin from a
#: random start per thread. ``CERTCTL_BENCH_MODE`` is ``post`` or ``get``.
LUA = r"""
local mode = os.getenv("CERTCTL_BENCH_MODE")
local file = os.getenv("CERTCTL_BENCH_INPUT")
local base = os.getenv("CERTCTL_BENCH_PATH")
local items = {}
for line in io.lines(file) do
  if mode == "post" then
    local body = line:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end)
    local headers = {["Content-Type"] = "application/ocsp-request"}
    items[#items + 1] = wrk.format("POST", base, headers, body)
  else
    items[#items + 1] = wrk.format("GET", base .. line)
  end
end
local n = #items
local i = 0
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(n) - 1
end
function request()
  i = (i % n) + 1
  return items[i]
end
"""

REASONS = (0, 1, 3, 4, 5)  # unspecified, keyCompromise, affiliationChanged, superseded, cessation


@attrs.frozen
class Expected:
    """What every serial should be answered with: revoked serial -> reason code."""

    serials: tuple[int, ...]
    revoked: dict[int, int]


def choose_revoked(serials: list[int], fraction: float, seed: int = 6960) -> dict[int, int]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not keys
    picked = rng.sample(serials, round(len(serials) * fraction))
    return {s: rng.choice(REASONS) for s in picked}


def requests_for(issuer: x509.Certificate, serials: list[int], seed: int = 5019) -> list[bytes]:
    """One DER OCSPRequest per serial (SHA-1 CertID), every other one with a nonce,
    in a shuffled order (the same for the same seed)."""
    rng = random.Random(seed)  # noqa: S311
    order = list(serials)
    rng.shuffle(order)
    out = []
    sha1 = hashes.SHA1()  # noqa: S303 - what OCSP clients send
    name_hash = _name_hash(issuer)
    key_hash = _key_hash(issuer)
    for i, serial in enumerate(order):
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash, key_hash, serial, sha1
        )
        if i % 2 == 0:
            builder = builder.add_extension(x509.OCSPNonce(secrets.token_bytes(16)), critical=False)
        out.append(builder.build().public_bytes(serialization.Encoding.DER))
    return out


def _name_hash(cert: x509.Certificate) -> bytes:
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


def _key_hash(cert: x509.Certificate) -> bytes:
    from certctl_core.revocation import issuer_hashes

    return issuer_hashes(cert)["sha1"][1]


def write_wrk_inputs(directory: Path, name: str, requests: list[bytes]) -> tuple[Path, Path]:
    """``name.post`` (hex bodies) and ``name.get`` (URL-encoded base64 paths)."""
    post = directory / f"{name}.post"
    get = directory / f"{name}.get"
    post.write_text("".join(r.hex() + "\n" for r in requests))
    get.write_text(
        "".join("/" + quote(base64.b64encode(r).decode(), safe="") + "\n" for r in requests)
    )
    return post, get


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class OpenSSLResponder:
    """The files ``openssl ocsp -index`` needs: a P-256 CA, a delegated P-256 responder
    certificate (OCSPSigning), and an ``index.txt`` listing the same serials, the same
    ones revoked with the same reasons."""

    def __init__(self, directory: Path, expected: Expected) -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(_name("openssl baseline CA"))
            .issuer_name(_name("openssl baseline CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        responder = (
            x509.CertificateBuilder()
            .subject_name(_name("openssl baseline OCSP responder"))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_file = directory / "openssl-ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(pem))
        self.cert_file = directory / "openssl-responder.pem"
        self.cert_file.write_bytes(responder.public_bytes(pem))
        self.key_file = directory / "openssl-responder.key"
        self.key_file.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        expiry = (now + dt.timedelta(days=30)).strftime("%y%m%d%H%M%SZ")
        revoked_at = (now - dt.timedelta(minutes=5)).strftime("%y%m%d%H%M%SZ")
        names = {
            0: "unspecified",
            1: "keyCompromise",
            3: "affiliationChanged",
            4: "superseded",
            5: "cessationOfOperation",
        }
        lines = []
        for serial in expected.serials:
            hexed = format(serial, "X")
            hexed = "0" * (len(hexed) % 2) + hexed
            reason = expected.revoked.get(serial)
            if reason is None:
                lines.append(f"V\t{expiry}\t\t{hexed}\tunknown\t/CN=leaf-{hexed}\n")
            else:
                lines.append(
                    f"R\t{expiry}\t{revoked_at},{names[reason]}\t{hexed}\tunknown\t/CN=leaf-{hexed}\n"
                )
        self.index_file = directory / "index.txt"
        self.index_file.write_text("".join(lines))

    def argv(self, port: int, processes: int) -> list[str]:
        return [
            "openssl",
            "ocsp",
            "-index",
            str(self.index_file),
            "-CA",
            str(self.ca_file),
            "-rsigner",
            str(self.cert_file),
            "-rkey",
            str(self.key_file),
            "-port",
            str(port),
            "-nmin",
            "60",
            "-multi",
            str(processes),
        ]
