"""Debian's Pebble and pebble-challtestsrv on loopback, for tests and benchmarks.

::

    with ChallTestSrv.start(tmp_path / "dns") as dns:
        with Pebble.start(tmp_path / "pebble", dns=dns) as pebble:
            config = {"directory_url": pebble.directory_url,
                      "tls_root_path": str(pebble.tls_root), ...}

Pebble ships no TLS certificate: :meth:`Pebble.start` makes a throw-away CA and a server
certificate for ``127.0.0.1``/``localhost`` (``tls_root`` is what a client trusts). Every
start has a new random issuing CA: read it with :meth:`Pebble.issuing_chain` after the
start. Both binaries come from the ``pebble`` package (``scripts/setup.sh`` installs it).
Facts behind every switch here: the shared ACME-FACTS notes, summarised in
docs/connectors/acme.md.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "EAB_KEYS",
    "NEWER_PEBBLE_ENV",
    "ChallTestSrv",
    "Pebble",
    "free_port",
    "newer_pebble",
]

#: Where ``scripts/setup.sh`` unpacks Pebble from Debian unstable (2.10: ARI, profiles),
#: overridable with this environment variable (a ``pebble`` binary).
NEWER_PEBBLE_ENV = "CERTCTL_NEWER_PEBBLE"
_SID_BINARY = ("pebble-sid", "root", "usr", "bin", "pebble")


def newer_pebble() -> Path:
    """The newer Pebble (Debian unstable's, with ``renewalInfo`` and profiles).

    Raises RuntimeError naming the fix when it is not there: tests need it, never skip.
    """
    cache = os.environ.get("CERTCTL_CACHE_DIR") or Path.home() / ".cache" / "certctl"
    path = Path(os.environ.get(NEWER_PEBBLE_ENV) or Path(cache).joinpath(*_SID_BINARY))
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"no newer Pebble at {path}: run scripts/setup.sh (it fetches Debian unstable's "
            f"pebble into ~/.cache/certctl/pebble-sid) or set {NEWER_PEBBLE_ENV}"
        )
    return path


#: The MAC keys of Debian's example EAB config (pebble-config-external-account-bindings.json).
EAB_KEYS = {
    "kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    "kid-2": "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
}
_EAB_EXAMPLE = Path("/usr/share/doc/pebble/examples/pebble-config-external-account-bindings.json")
_started: dict[int, subprocess.Popen[bytes]] = {}


def _kill_all() -> None:
    for process in list(_started.values()):
        if process.poll() is None:
            process.kill()
            process.wait()


atexit.register(_kill_all)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eab_example_keys() -> dict[str, str]:
    """The EAB keys of the example config the ``pebble`` package ships (else EAB_KEYS)."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(_EAB_EXAMPLE.read_text())
        return dict(data["pebble"]["externalAccountMACKeys"])
    return dict(EAB_KEYS)


def _spawn(
    argv: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    _started[process.pid] = process
    return process


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _started.pop(process.pid, None)


@attrs.define(eq=False)
class ChallTestSrv:
    """``pebble-challtestsrv`` as a DNS server answering 127.0.0.1 for every name."""

    workdir: Path
    dns_port: int
    management_port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, workdir: Path, *, dns_port: int | None = None) -> ChallTestSrv:
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, dns_port or free_port(), free_port())
        server.process = _spawn(
            [
                "pebble-challtestsrv",
                "-dns01",
                f"127.0.0.1:{server.dns_port}",
                "-management",
                f"127.0.0.1:{server.management_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",  # else AAAA ::1 and validation dials [::1]
            ],
            workdir / "challtestsrv.log",
        )
        server._wait()
        return server

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def _wait(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.workdir / "challtestsrv.log").read_text()[-500:]
                raise RuntimeError(f"pebble-challtestsrv exited: {log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.management_port), 0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("pebble-challtestsrv did not start")

    def txt_queries(self, host: str) -> list[Any]:
        answer = httpx.post(
            f"{self.management_url}/dns-request-history", json={"host": host}, timeout=5
        )
        answer.raise_for_status()
        return list(answer.json() or [])

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certctl test Pebble TLS root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    root = directory / "tls-root.pem"
    root.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path = directory / "tls-cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "tls-key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return root, cert_path, key_path


@attrs.define(eq=False)
class Pebble:
    """A Pebble ACME server on 127.0.0.1 (see the module docstring)."""

    workdir: Path
    port: int
    management_port: int
    http_port: int
    tls_root: Path
    tls_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        dns: ChallTestSrv | None = None,
        http_port: int | None = None,
        eab: Mapping[str, str] | None = None,
        validity_seconds: int | None = 86400,
        always_valid: bool = False,
        nonce_reject_percent: int = 0,
        authz_reuse_percent: int | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        binary: Path | str = "pebble",
        profiles: Mapping[str, int] | None = None,
        retry_after: Mapping[str, int] | None = None,
    ) -> Pebble:
        """Start Pebble; ``eab`` (kid -> base64url MAC key) makes EAB required.

        ``binary``, ``profiles`` (name -> validity seconds) and ``retry_after`` (``authz``,
        ``order`` seconds) are for the newer Pebble (:func:`newer_pebble`).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        root, cert, key = _tls_files(workdir / "tls")
        pebble = cls(workdir, free_port(), free_port(), http_port or free_port(), root, free_port())
        config: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{pebble.port}",
            "managementListenAddress": f"127.0.0.1:{pebble.management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": pebble.http_port,
            "tlsPort": pebble.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab),
            "externalAccountMACKeys": dict(eab or {}),
        }
        if validity_seconds is not None:
            config["certificateValidityPeriod"] = validity_seconds
        if profiles:
            config["profiles"] = {
                name: {"description": f"{name} ({seconds} s)", "validityPeriod": seconds}
                for name, seconds in profiles.items()
            }
        if retry_after:
            config["retryAfter"] = dict(retry_after)
        config_path = workdir / "pebble.json"
        config_path.write_text(json.dumps({"pebble": config}))
        variables = {
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(nonce_reject_percent),
        }
        if always_valid:
            variables["PEBBLE_VA_ALWAYS_VALID"] = "1"
        if authz_reuse_percent is not None:
            variables["PEBBLE_AUTHZREUSE"] = str(authz_reuse_percent)
        variables.update(env or {})
        argv = [str(binary), "-config", str(config_path), "-strict=false"]
        if dns is not None:
            argv += ["-dnsserver", f"127.0.0.1:{dns.dns_port}"]
        pebble.process = _spawn(argv, workdir / "pebble.log", variables)
        try:
            pebble._wait(timeout)
        except BaseException:
            pebble.stop()
            raise
        return pebble

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.tls_root))
        return httpx.Client(verify=context, timeout=5, trust_env=False)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"pebble exited: {(self.workdir / 'pebble.log').read_text()[-800:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.directory_url).status_code == 200:
                        return
                time.sleep(0.05)
        raise RuntimeError("pebble did not answer its directory in time")

    def issuing_chain(self) -> tuple[x509.Certificate, ...]:
        """This start's intermediate(s) then root, from the management interface."""
        with self.client() as client:
            inter = client.get(f"{self.management_url}/intermediates/0")
            root = client.get(f"{self.management_url}/roots/0")
        inter.raise_for_status()
        root.raise_for_status()
        return (
            *x509.load_pem_x509_certificates(inter.content),
            x509.load_pem_x509_certificate(root.content),
        )

    def write_issuing_chain(self, path: Path) -> Path:
        path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.issuing_chain())
        )
        return path

    def cert_status(self, serial: int) -> dict[str, Any] | None:
        """Pebble's record of ``serial`` (``Status``, ``Reason``), None when unknown."""
        with self.client() as client:
            answer = client.get(f"{self.management_url}/cert-status-by-serial/{serial:x}")
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        value = answer.json()
        return value if isinstance(value, dict) else None

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
