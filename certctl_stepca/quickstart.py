"""The quickstart: the whole lifecycle against a real step-ca on loopback, through ``certctl``.

``./scripts/quickstart.sh`` (the README's first command) runs ``python -m
certctl_stepca.quickstart``. It gets step-ca (built offline from Debian's sources on first
use, with progress, then cached), generates a throwaway PKI with a JWK provisioner and a
second one for delegated OCSP responder certificates, starts step-ca on a free loopback
port, starts the reference server (``certctl serve``) and configures the issuer through its
API, then drives the ``certctl`` command line exactly as an operator would, printing each
command: ``check``, ``issue``, ``openssl verify``, ``renew``, ``openssl verify``,
``revoke``, and ``openssl ocsp`` against the server, which answers ``revoked``.

When step-ca cannot be built on this machine (no Go, no Debian sources), the embedded
Local CA stands in (without the server) and the quickstart says so. Every process it
starts is stopped on success, failure, Ctrl-C or SIGTERM; each run works in a fresh
directory, so it can be run again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

__all__ = ["QuickstartError", "main"]

NAME = "quickstart.certctl.test"
ISSUER_ID = "quickstart"
RESPONDER_PROVISIONER = "certctl-ocsp"


class QuickstartError(Exception):
    """A step failed; the message says which and why."""


class Console:
    """Numbered steps on stdout, command output indented under them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n==> [{self.number}/{self.total}] {text}", flush=True)

    def say(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            print(f"    {line}", flush=True)

    def note(self, text: str) -> None:
        print(f"==> {text}", flush=True)


def _certctl_argv() -> list[str]:
    script = Path(sys.executable).with_name("certctl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "certctl_host.cli"]


def _child_env() -> dict[str, str]:
    """The environment for commands we run: none of the user's certctl settings leak in."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CERTCTL_STEPCA_", "CERTCTL_LOCALCA_"))
        and k not in ("CERTCTL_ISSUER_TYPE", "CERTCTL_CONFIG", "CERTCTL_DISABLE_PLUGINS")
    }


class Runner:
    """Runs ``certctl`` and ``openssl`` in the work directory, showing each command."""

    def __init__(self, console: Console, workdir: Path) -> None:
        self.console = console
        self.workdir = workdir
        self.certctl = _certctl_argv()

    def show(self, argv: Sequence[str]) -> None:
        shown = [Path(a).name if a == self.certctl[0] else a for a in argv]
        text = shlex.join(shown).replace(str(self.workdir) + "/", "")
        print(f"    $ {text}", flush=True)

    def run(
        self, argv: Sequence[str], *, check: bool = True, show_output: bool = True
    ) -> subprocess.CompletedProcess[str]:
        self.show(argv)
        done = subprocess.run(
            list(argv),
            cwd=self.workdir,
            env=_child_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if show_output:
            output = (done.stdout + done.stderr).strip()
            if output:
                self.console.say(output)
        if check and done.returncode != 0:
            if not show_output:
                self.console.say((done.stdout + done.stderr).strip())
            raise QuickstartError(f"{shlex.join(argv[:3])} ... exited with {done.returncode}")
        return done

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([*self.certctl, *args], check=check)

    def cli_json(self, *args: str) -> Any:
        done = self.run([*self.certctl, *args, "--json"], show_output=False)
        return json.loads(done.stdout)

    def verify(self, chain: Path, root: Path) -> None:
        """``openssl verify`` the leaf of ``chain`` against ``root``, intermediates untrusted."""
        leaf, *intermediates = x509.load_pem_x509_certificates(chain.read_bytes())
        (self.workdir / "verify-leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
        (self.workdir / "verify-untrusted.pem").write_bytes(
            b"".join(c.public_bytes(Encoding.PEM) for c in intermediates)
        )
        self.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                os.path.relpath(root, self.workdir),
                "-untrusted",
                "verify-untrusted.pem",
                "verify-leaf.pem",
            ]
        )


# -- the CA: step-ca, or the Local CA when step-ca cannot be built -----------------------


class Backend:
    """A running CA for the quickstart and the certctl config that reaches it."""

    type_name: str
    label: str
    root: Path
    config_file: Path

    def start(self) -> None:
        """Start whatever runs (after :meth:`close` is registered for cleanup)."""

    def close(self) -> None:
        """Stop whatever was started."""


class StepCABackend(Backend):
    type_name = "stepca"

    def __init__(self, console: Console, workdir: Path, binary: Path) -> None:
        from certctl_stepca.testing import (
            OCSP_RESPONDER_TEMPLATE,
            StepCA,
            make_provisioner_key,
            provisioner_entry,
        )

        password = secrets.token_urlsafe(24)
        key = make_provisioner_key("certctl-quickstart", password)
        claims = {"defaultTLSCertDuration": "24h", "maxTLSCertDuration": "72h"}
        # A second provisioner (same key) whose template makes delegated OCSP responder
        # certificates: step-ca has no OCSP, the certctl server answers for it.
        responder = provisioner_entry(key, claims=claims, x509_template=OCSP_RESPONDER_TEMPLATE)
        responder["name"] = RESPONDER_PROVISIONER
        self.ca = StepCA.create(
            workdir / "step-ca",
            binary=binary,
            provisioners=[provisioner_entry(key, claims=claims), responder],
        )
        console.say(
            f"PKI and JWK provisioners {key.name!r} and {RESPONDER_PROVISIONER!r} (OCSP "
            f"responder template) generated in {self.ca.workdir.name}/"
        )
        self.console = console
        self.key = key
        self.workdir = workdir
        self.root = self.ca.root_file
        self.label = "step-ca"
        self.settings: dict[str, str] = {}

    def start(self) -> None:
        """Start step-ca (register :meth:`close` first) and write the issuer settings."""
        self.ca.start()
        startup = (self.ca.last_startup_s or 0) * 1000
        self.console.say(
            f"step-ca pid {self.ca.pid} serving {self.ca.url} (healthy in {startup:.0f} ms)"
        )
        self.label = f"step-ca at {self.ca.url}"
        key_file = self.key.write_key_file(self.workdir / "provisioner.json")
        password_file = self.key.write_password_file(self.workdir / "provisioner-password")
        self.settings = {
            "ca_url": self.ca.url,  # known for sure only once started (the port may move)
            "provisioner_name": self.key.name,
            "provisioner_key_path": str(key_file),
            "provisioner_password_file": str(password_file),
            "root_cert_path": str(self.root),
        }
        self.config_file = self.workdir / "stepca.json"
        self.config_file.write_text(json.dumps(self.settings, indent=2) + "\n")

    def close(self) -> None:
        self.ca.stop()


class LocalCABackend(Backend):
    type_name = "localca"
    label = "the embedded Local CA"

    def __init__(self, console: Console, workdir: Path, runner: Runner) -> None:
        password_file = workdir / "localca-password"
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        self.config_file = workdir / "localca.toml"
        self.config_file.write_text(
            "# certctl issuer settings for the quickstart's Local CA\n"
            f'state_dir = "{workdir / "localca-state"}"\n'
            f'key_password_file = "{password_file}"\n'
        )
        self.root = workdir / "localca-root.pem"
        done = runner.cli_json("chain", "--type", "localca", "--config", str(self.config_file))
        chain = x509.load_pem_x509_certificates(done["chain_pem"].encode("ascii"))
        self.root.write_bytes(chain[-1].public_bytes(Encoding.PEM))
        console.say(f"Local CA created in {workdir.name}/localca-state (root {self.root.name})")


def _get_step_ca(console: Console) -> Path | None:
    """The step-ca binary (built with progress on first use), or None if it cannot be."""
    from certctl_stepca.testing import StepCATestingError, ensure_step_ca_binary

    started = time.monotonic()
    try:
        binary = ensure_step_ca_binary(progress=console.say, heartbeat=5.0)
    except StepCATestingError as exc:
        first = str(exc).strip().splitlines()[0]
        console.say(f"step-ca cannot be built on this machine: {first}")
        return None
    took = time.monotonic() - started
    console.say(f"step-ca binary {binary} ({'cached' if took < 2 else f'built in {took:.0f} s'})")
    return binary


# -- the reference server ---------------------------------------------------------------


class Server:
    """``certctl serve`` on a free loopback port, stopped by :meth:`close`."""

    def __init__(self, console: Console, runner: Runner, workdir: Path) -> None:
        self.console = console
        self.runner = runner
        self.workdir = workdir
        self.data_dir = workdir / "server-data"
        self.token = secrets.token_urlsafe(32)
        self.token_file = workdir / "api-token"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        """Spawn ``certctl serve`` and wait until it listens. Register :meth:`close`
        for cleanup *before* calling this: a signal may arrive at any point."""
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.token + "\n")
        argv = [
            *self.runner.certctl,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            "0",
            "--api-token-file",
            str(self.token_file),
        ]
        self.runner.show(argv)
        with _signals_deferred(), self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=_child_env(),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        self.url = self._wait_ready(timeout=60.0)
        self.console.say(f"certctl serve pid {self.process.pid} listening on {self.url}")
        self.console.say(
            f"(its log: {self.log_path.name}; API token in {self.token_file.name}, mode 0600)"
        )

    def _wait_ready(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                found = re.search(r"serving (http://\S+)", line)
                if found:
                    return found.group(1)
                if not line and self.process.poll() is not None:
                    break
            elif self.process.poll() is not None:
                break
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
        self.console.say("\n".join(tail))
        raise QuickstartError("certctl serve did not start (its log is above)")

    def put_issuer(self, issuer_id: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx  # a dependency of the project; only the server steps need it here

        url = f"{self.url}/api/v1/issuers/{issuer_id}"
        print(f"    $ PUT {url}   (Authorization: Bearer ********)", flush=True)
        shown = json.dumps(body, indent=2).replace(str(self.data_dir.parent) + "/", "")
        self.console.say(shown)
        response = httpx.put(
            url,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60.0,
            trust_env=False,
        )
        answer: dict[str, Any] = response.json()
        if response.status_code not in (200, 201):
            self.console.say(json.dumps(answer, indent=2))
            raise QuickstartError(f"PUT {url} answered {response.status_code}")
        status = answer.get("status", {})
        self.console.say(
            f"-> {response.status_code}: serving={status.get('serving')}, "
            f"ocsp={status.get('ocsp')}, revision {answer.get('revision')}"
        )
        return answer

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.console.note("stopped certctl serve")


def _server_available() -> bool:
    try:
        import certctl_host.server  # noqa: F401
    except ImportError:
        return False
    return True


# -- the run ---------------------------------------------------------------------------


def _issue_renew_revoke(
    console: Console, runner: Runner, backend: Backend, issuer: Sequence[str]
) -> None:
    console.step(f"issuing a certificate for {NAME} (certctl generates the key)")
    runner.cli(
        "issue",
        *issuer,
        "--cn",
        NAME,
        "--san",
        NAME,
        "--san",
        "127.0.0.1",
        "--validity",
        "8h",
        "--key-out",
        "app.key",
        "--out",
        "app.pem",
    )

    console.step("verifying it with openssl against the CA's root")
    runner.verify(runner.workdir / "app.pem", backend.root)

    console.step("renewing it (same names, same key) into renewed.pem, and verifying that")
    runner.cli(
        "renew",
        *issuer,
        "--cert",
        "app.pem",
        "--key",
        "app.key",
        "--out",
        "renewed.pem",
        "--validity",
        "8h",
    )
    runner.verify(runner.workdir / "renewed.pem", backend.root)

    console.step("revoking the renewed certificate (keyCompromise), twice: it is idempotent")
    runner.cli("revoke", *issuer, "--cert", "renewed.pem", "--reason", "keyCompromise")
    runner.cli("revoke", *issuer, "--cert", "renewed.pem", "--reason", "keyCompromise")


def _with_server(
    console: Console, runner: Runner, backend: StepCABackend, cleanup: ExitStack
) -> None:
    console.step("starting the reference server (certctl serve) on a free loopback port")
    server = Server(console, runner, runner.workdir)
    cleanup.callback(server.close)
    server.start()

    console.step(f"configuring issuer {ISSUER_ID!r} through the server's API")
    server.put_issuer(
        ISSUER_ID,
        {
            "type": "stepca",
            "config": backend.settings,
            "ocsp_responder": {"config": {"provisioner_name": RESPONDER_PROVISIONER}},
        },
    )
    issuer = ["--data-dir", server.data_dir.name, "--issuer-id", ISSUER_ID]

    console.step("certctl uses that stored issuer: check it")
    runner.cli("check", *issuer)

    _issue_renew_revoke(console, runner, backend, issuer)

    console.step(
        "asking the server's OCSP responder with openssl: app.pem good, renewed.pem revoked"
    )
    url = f"{server.url}/.well-known/pki/ocsp/{ISSUER_ID}"
    intermediates = x509.load_pem_x509_certificates((runner.workdir / "app.pem").read_bytes())[1:]
    (runner.workdir / "issuer.pem").write_bytes(intermediates[0].public_bytes(Encoding.PEM))
    for name, expected in (("app.pem", "good"), ("renewed.pem", "revoked")):
        done = runner.run(
            [
                "openssl",
                "ocsp",
                "-issuer",
                "issuer.pem",
                "-cert",
                name,
                "-CAfile",
                os.path.relpath(backend.root, runner.workdir),
                "-url",
                url,
            ]
        )
        text = done.stdout + done.stderr
        if "Response verify OK" not in text or f"{name}: {expected}" not in text:
            raise QuickstartError(f"the OCSP answer does not show {name} as {expected}")


def _without_server(console: Console, runner: Runner, backend: Backend) -> None:
    issuer = ["--type", backend.type_name, "--config", backend.config_file.name]
    console.step(f"certctl sees the connector types, and checks the issuer ({backend.label})")
    runner.cli("plugins")
    runner.cli("check", *issuer)

    _issue_renew_revoke(console, runner, backend, issuer)

    console.step("revocation status")
    if backend.type_name == "localca":
        runner.cli("status", *issuer, "--cert", "renewed.pem")
        runner.cli("status", *issuer, "--cert", "app.pem")
    else:
        console.say(
            "step-ca 0.19 has no OCSP responder and no CRL, and this checkout has no "
            "reference server: the revocation is recorded in step-ca's database (the second "
            "revoke answered 'already revoked')."
        )


class _Signals:
    """SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C (KeyboardInterrupt), so the cleanup
    stops every process; while a child is being spawned they are held, so cleanup always
    knows every child. (Blocking them in the kernel instead would be inherited by the
    children, which would then ignore SIGTERM.)"""

    deferred = False
    pending: list[str] = []  # noqa: RUF012 - one process-wide instance

    @classmethod
    def install(cls) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, cls.handle)

    @classmethod
    def handle(cls, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if cls.deferred:
            cls.pending.append(name)
            return
        raise KeyboardInterrupt(name)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold stop signals while a child is spawned and remembered; act on them after."""
    _Signals.deferred = True
    try:
        yield
    finally:
        _Signals.deferred = False
    if _Signals.pending:
        raise KeyboardInterrupt(_Signals.pending[0])


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="certctl-quickstart-") as tmp:
            yield Path(tmp)
        return
    run_dir = keep / time.strftime("run-%Y%m%dT%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    yield run_dir


def run(ca: str, keep: Path | None) -> None:
    with _workdir(keep) as workdir, ExitStack() as cleanup:
        with_server = ca != "localca" and _server_available()
        console = Console(total=9 if with_server else 7)
        runner = Runner(console, workdir)
        console.note(f"working in {workdir}{'' if keep else ' (removed at the end)'}")
        console.step("getting a CA")
        binary = _get_step_ca(console) if ca in ("auto", "stepca") else None
        backend: Backend
        if binary is not None:
            backend = StepCABackend(console, workdir, binary)
        elif ca == "stepca":
            raise QuickstartError("step-ca is not available (see above) and --ca stepca was asked")
        else:
            why = "asked for with --ca localca" if ca == "localca" else "falling back"
            console.say(f"using the embedded Local CA instead of step-ca ({why})")
            console.say("it answers revocation status itself: the server steps are skipped")
            backend = LocalCABackend(console, workdir, runner)
        cleanup.callback(_stopped, console, backend)
        with _signals_deferred():
            backend.start()
        if isinstance(backend, StepCABackend) and with_server:
            _with_server(console, runner, backend, cleanup)
        else:
            console.total = 7
            _without_server(console, runner, backend)


def _stopped(console: Console, backend: Backend) -> None:
    backend.close()
    if isinstance(backend, StepCABackend):
        console.note("stopped step-ca")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/quickstart.sh",
        description="Issue, verify, renew and revoke a certificate through a real step-ca "
        "on loopback, with the certctl command line.",
    )
    parser.add_argument(
        "--ca",
        choices=("auto", "stepca", "localca"),
        default="auto",
        help="auto: step-ca, or the Local CA if step-ca cannot be built (default)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        type=Path,
        help="keep the files of this run in DIR/run-<time> instead of a temporary directory",
    )
    args = parser.parse_args(argv)
    _Signals.install()
    try:
        run(args.ca, args.keep)
    except KeyboardInterrupt:
        print("\n==> interrupted; every process started was stopped", file=sys.stderr)
        return 130
    except QuickstartError as exc:
        print(f"\n==> quickstart failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - report any failure as one line, not a traceback
        print(f"\n==> quickstart failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n==> done: issued, verified, renewed and revoked a certificate through certctl")
    print("    (run it again any time; --keep DIR keeps the files, --help lists the options)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
