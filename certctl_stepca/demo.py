"""The main job, end to end: a real step-ca on loopback, then issue, verify and revoke.

``python -m certctl_stepca.demo`` (the README's first command) builds step-ca from
Debian's sources on first use (cached), generates a throwaway PKI and JWK provisioner,
starts step-ca, discovers the step-ca connector through its entry point, and drives it
through the registry exactly as certctl-server would. Every process it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl_core import CertctlError, CertificateRequest, PluginHost, Registry, RevocationReason
from certctl_stepca.harness import (
    StepCA,
    StepCAHarnessError,
    ensure_step_ca_binary,
    make_provisioner_key,
    provisioner_entry,
)

__all__ = ["main"]


def _say(step: str) -> None:
    print(f"==> {step}", flush=True)


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically, mode 0600 from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


async def _run(workdir: Path, name: str) -> None:
    _say("getting step-ca (built offline from Debian's sources on first use, then cached)")
    binary = await asyncio.to_thread(ensure_step_ca_binary, progress=lambda m: _say(m))
    password = secrets.token_urlsafe(24)
    key = make_provisioner_key("certctl-demo", password)
    claims = {"defaultTLSCertDuration": "24h", "maxTLSCertDuration": "72h"}
    ca = StepCA.create(
        workdir / "step-ca", binary=binary, provisioners=[provisioner_entry(key, claims=claims)]
    )
    _say(f"starting step-ca on {ca.url}")
    await asyncio.to_thread(ca.start)
    try:
        config = {
            "ca_url": ca.url,
            "provisioner_name": key.name,
            "provisioner_key_path": str(key.write_key_file(workdir / "provisioner.json")),
            "provisioner_password_file": str(key.write_password_file(workdir / "password")),
            "root_cert_path": str(ca.root_file),
        }
        host = PluginHost.discover()
        async with Registry(host) as registry:
            _say(f"connector types discovered: {', '.join(sorted(registry.types))}")
            await registry.build("demo", "stepca", config)
            report = await registry.check("demo")
            for check in report.checks:
                mark = {True: "ok ", False: "FAIL", None: "-- "}[check.ok]
                print(f"    [{mark}] {check.name}: {check.detail}")

            _say(f"issuing a certificate for {name}")
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                .sign(leaf_key, hashes.SHA256())
            )
            request = CertificateRequest.from_csr(csr, validity=dt.timedelta(hours=8))
            issued = await registry.issue("demo", request)
            key_path, chain_path = workdir / f"{name}.key", workdir / f"{name}.pem"
            _write_private(
                key_path,
                leaf_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            _write_private(chain_path, issued.chain_pem.encode())
            print(f"    serial {issued.serial_decimal} (0x{issued.serial_hex})")
            span = f"{issued.not_before:%Y-%m-%d %H:%M} .. {issued.not_after:%Y-%m-%d %H:%M}"
            print(f"    valid {span} UTC")
            print(f"    chain written to {chain_path}")

            _say("verifying the chain with openssl against step-ca's root")
            intermediates = workdir / "intermediates.pem"
            intermediates.write_text(
                "".join(
                    c.public_bytes(serialization.Encoding.PEM).decode() for c in issued.chain[1:]
                )
            )
            leaf = workdir / "leaf.pem"
            leaf.write_text(issued.pem)
            result = await asyncio.to_thread(
                subprocess.run,
                [
                    "openssl",
                    "verify",
                    "-CAfile",
                    str(ca.root_file),
                    "-untrusted",
                    str(intermediates),
                    str(leaf),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            print(f"    {(result.stdout or result.stderr).strip()}")
            if result.returncode != 0:
                raise SystemExit("openssl could not verify the certificate")

            _say("revoking it (keyCompromise)")
            revoked = await registry.revoke("demo", issued.serial, RevocationReason.KEY_COMPROMISE)
            print(f"    revoked serial {revoked.serial} reason {revoked.reason.rfc_name}")
            again = await registry.revoke("demo", issued.serial, RevocationReason.KEY_COMPROMISE)
            print(f"    revoking again: already_revoked={again.already_revoked}")
    finally:
        _say("stopping step-ca")
        await asyncio.to_thread(ca.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m certctl_stepca.demo",
        description="Issue, verify and revoke a certificate through a real step-ca on loopback.",
    )
    parser.add_argument("--name", default="demo.certctl.test", help="DNS name to certify")
    parser.add_argument(
        "--keep",
        metavar="DIR",
        type=Path,
        help="keep the files in DIR instead of a temporary directory",
    )
    args = parser.parse_args(argv)
    try:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            asyncio.run(_run(args.keep, args.name))
        else:
            with tempfile.TemporaryDirectory(prefix="certctl-demo-") as tmp:
                asyncio.run(_run(Path(tmp), args.name))
    except (CertctlError, StepCAHarnessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _say("done: issued, verified and revoked through step-ca")
    return 0


if __name__ == "__main__":
    sys.exit(main())
