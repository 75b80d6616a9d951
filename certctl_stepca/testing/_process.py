"""Run a real step-ca on loopback: write ca.json, start, stop, kill, restart, reload."""

from __future__ import annotations

import atexit
import copy
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import attrs
import httpx

from ._build import ensure_step_ca_binary
from ._errors import StepCAReloadError, StepCAStartError
from ._files import write_atomic, write_private
from ._pki import PKI, generate_pki

__all__ = ["StepCA"]

_log = logging.getLogger(__name__)

_POLL_INTERVAL_S: Final = 0.005
_STOP_GRACE_S: Final = 10.0
_PORT_ATTEMPTS: Final = 5
_LOG_TAIL_LINES: Final = 40
_ADDRESS_IN_USE: Final = "address already in use"


class _ProcessRegistry:
    """Every step-ca this interpreter started and has not reaped yet; killed at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        atexit.register(self.kill_all)

    def add(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes[process.pid] = process

    def discard(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.pop(process.pid, None)

    def kill_all(self) -> None:
        with self._lock:
            processes = list(self._processes.values())
            self._processes.clear()
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


_registry = _ProcessRegistry()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.define(eq=False)
class StepCA:
    """A real step-ca process serving HTTPS on ``127.0.0.1``, configured by the testing kit.

    Create it with :meth:`create`; use it as a context manager (start/stop) or call
    :meth:`start` and :meth:`stop`. Processes that are still running when the interpreter
    exits are killed (atexit), so a forgotten :meth:`stop` leaves no orphan.
    """

    workdir: Path
    binary: Path
    pki: PKI
    port: int
    dns_names: tuple[str, ...]
    db: bool
    password: str = attrs.field(repr=False)
    _provisioners: list[dict[str, Any]] = attrs.field(repr=False)
    _process: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False, repr=False)
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False, repr=False)
    #: Seconds from spawning the process to the first 200 on /health, for the last start.
    last_startup_s: float | None = attrs.field(default=None, init=False)
    #: A file step-ca sees as /etc/resolv.conf (its own mount namespace; root only): its
    #: ACME validation resolves names with the system resolver and has no setting for it.
    resolv_conf: Path | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def create(
        cls,
        workdir: Path,
        *,
        binary: Path | None = None,
        provisioners: Sequence[Mapping[str, Any]],
        pki: PKI | None = None,
        dns_names: Sequence[str] = ("localhost", "127.0.0.1"),
        db: bool = True,
        password: str = "intermediate-password-not-used",  # noqa: S107 (key is unencrypted)
        resolv_conf: Path | None = None,
    ) -> StepCA:
        """Prepare a step-ca in ``workdir`` (PKI, password file, ``ca.json``); do not start it.

        ``binary`` defaults to :func:`ensure_step_ca_binary` (built on first use); ``pki``
        defaults to a fresh :func:`generate_pki` in ``workdir/pki``. With ``db`` the CA gets a
        ``badgerv2`` database in ``workdir/db`` (needed for revocation and durable replay
        protection). The port is a free loopback port, chosen now. With ``resolv_conf``
        the CA runs in its own mount namespace (``unshare -m``, root) where that file is
        ``/etc/resolv.conf``: ACME dns-01 and http-01 then resolve through a test DNS
        server; the host's ``/etc/resolv.conf`` is untouched.

        Raises:
            ValueError: two provisioners share a name, or ``dns_names`` has neither
                ``127.0.0.1`` nor ``localhost``.
            StepCAUnavailableError, StepCABuildError: see :func:`ensure_step_ca_binary`.
        """
        if not {"127.0.0.1", "localhost"} & set(dns_names):
            raise ValueError(
                "dns_names must include '127.0.0.1' or 'localhost' (the testing kit talks to the "
                "CA on loopback and verifies its TLS certificate)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        entries = _checked_provisioners(provisioners)
        ca = cls(
            workdir=workdir,
            binary=binary if binary is not None else ensure_step_ca_binary(),
            pki=pki if pki is not None else generate_pki(workdir / "pki"),
            port=_free_port(),
            dns_names=tuple(dns_names),
            db=db,
            password=password,
            provisioners=entries,
            resolv_conf=resolv_conf,
        )
        write_private(ca.password_file, (password + "\n").encode())
        ca._write_config()
        return ca

    # -- paths and addresses ---------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The ``ca.json`` step-ca runs with."""
        return self.workdir / "ca.json"

    @property
    def password_file(self) -> Path:
        """The ``--password-file`` (intermediate key password, newline-terminated)."""
        return self.workdir / "password.txt"

    @property
    def log_path(self) -> Path:
        """step-ca's stdout and stderr; appended to across restarts."""
        return self.workdir / "step-ca.log"

    @property
    def db_path(self) -> Path:
        """The badger database directory (used only when ``db`` is true)."""
        return self.workdir / "db"

    @property
    def root_file(self) -> Path:
        """The root certificate (PEM) clients must trust."""
        return self.pki.root_cert_path

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def localhost_url(self) -> str:
        """``https://localhost:<port>``."""
        return f"https://localhost:{self.port}"

    def acme_directory_url(self, provisioner: str = "acme") -> str:
        """The directory of the ACME provisioner ``provisioner`` (see
        :func:`~certctl_stepca.testing.acme_provisioner_entry`)."""
        return f"{self.url}/acme/{provisioner}/directory"

    @property
    def provisioners(self) -> list[dict[str, Any]]:
        """A copy of the provisioner entries in ``ca.json``."""
        return copy.deepcopy(self._provisioners)

    @property
    def pid(self) -> int | None:
        """The process id while running, else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the step-ca process is alive."""
        return self._process is not None and self._process.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts only this CA's root."""
        return ssl.create_default_context(cafile=str(self.root_file))

    @property
    def base_url(self) -> str:
        """:attr:`url`, or :attr:`localhost_url` when ``127.0.0.1`` is not a DNS name."""
        return self.url if "127.0.0.1" in self.dns_names else self.localhost_url

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` on :attr:`base_url` trusting only this CA's root, no proxies."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(
            base_url=self.base_url, verify=self.ssl_context(), trust_env=False, **kwargs
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Spawn step-ca and wait until ``GET /health`` answers 200.

        If the port was taken meanwhile, a new free port is chosen (up to a few times).

        Raises:
            StepCAStartError: the process exited or did not get healthy within ``timeout``
                (the message has the log tail).
        """
        self._start(timeout, allow_new_port=True)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop step-ca if it runs, then start it again on the same port.

        Tokens minted before the restart are rejected afterwards (their ``iat`` predates the
        new process).

        Raises:
            StepCAStartError: as for :meth:`start`; the port is not changed.
        """
        with self._lock:
            self.stop()
            self._start(timeout, allow_new_port=False)

    def stop(self) -> None:
        """SIGTERM step-ca and wait up to 10 s, then SIGKILL. A no-op when not running."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _log.warning("step-ca pid %d ignored SIGTERM; killing it", process.pid)
                    process.kill()
            process.wait()
            _registry.discard(process)
            self._process = None

    def kill(self) -> None:
        """SIGKILL step-ca (a crash, for fault tests) and reap it. A no-op when not running."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                process.kill()
            process.wait()
            _registry.discard(process)
            self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration changes ---------------------------------------------------------------

    def set_provisioners(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Replace the provisioners in ``ca.json`` (atomically). Call :meth:`reload` next.

        Raises:
            ValueError: two provisioners share a name.
        """
        with self._lock:
            self._provisioners = _checked_provisioners(entries)
            self._write_config()

    def add_provisioner(self, entry: Mapping[str, Any], *, timeout: float = 10.0) -> None:
        """Append a provisioner and :meth:`reload`."""
        with self._lock:
            self.set_provisioners([*self._provisioners, entry])
            self.reload(timeout)

    def remove_provisioner(self, name: str, *, timeout: float = 10.0) -> None:
        """Remove the provisioner called ``name`` and :meth:`reload`.

        Raises:
            KeyError: there is no such provisioner.
        """
        with self._lock:
            remaining = [p for p in self._provisioners if p.get("name") != name]
            if len(remaining) == len(self._provisioners):
                raise KeyError(name)
            self.set_provisioners(remaining)
            self.reload(timeout)

    def reload(self, timeout: float = 10.0) -> None:
        """Send SIGHUP and wait until step-ca serves the current ``ca.json``.

        Done means: step-ca logged that it serves again after the reload, and
        ``GET /1.0/provisioners`` lists exactly the configured provisioner names (and kids).
        Tokens minted before the reload are rejected afterwards: step-ca resets its start time.

        Raises:
            StepCAReloadError: step-ca rejected the configuration (it keeps the old one), the
                process died, or the change did not show within ``timeout``.
        """
        with self._lock:
            process = self._process
            if process is None or process.poll() is not None:
                raise StepCAReloadError("step-ca is not running; start it before reloading")
            offset = self._log_size()
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + timeout
            served_again = False
            with self.http_client(timeout=2.0) as client:
                while True:
                    new_log = self._read_log(offset)
                    if "error reloading" in new_log:
                        raise StepCAReloadError(
                            f"step-ca rejected the new configuration:\n{self._log_tail(offset)}"
                        )
                    if process.poll() is not None:
                        raise StepCAReloadError(
                            f"step-ca exited during reload (code {process.returncode}):\n"
                            f"{self._log_tail(offset)}"
                        )
                    served_again = served_again or _serving_after_reload(new_log)
                    if served_again and self._provisioners_match(client):
                        return
                    if time.monotonic() > deadline:
                        raise StepCAReloadError(
                            f"the reloaded configuration did not show within {timeout} s:\n"
                            f"{self._log_tail(offset)}"
                        )
                    time.sleep(_POLL_INTERVAL_S)

    # -- internals ---------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "root": str(self.pki.root_cert_path),
            "federatedRoots": None,
            "crt": str(self.pki.intermediate_cert_path),
            "key": str(self.pki.intermediate_key_path),
            "address": f"127.0.0.1:{self.port}",
            "insecureAddress": "",
            "dnsNames": list(self.dns_names),
            "logger": {"format": "text"},
            "authority": {"provisioners": self._provisioners},
        }
        if self.db:
            config["db"] = {"type": "badgerv2", "dataSource": str(self.db_path)}
        return config

    def _write_config(self) -> None:
        data = json.dumps(self._config(), indent=2) + "\n"
        write_atomic(self.config_path, data.encode())

    def _start(self, timeout: float, *, allow_new_port: bool) -> None:
        with self._lock:
            if self.running:
                raise StepCAStartError(f"step-ca is already running (pid {self.pid})")
            self.kill()  # reap a process that exited on its own, if any
            attempts = _PORT_ATTEMPTS if allow_new_port else 1
            for attempt in range(1, attempts + 1):
                try:
                    self._spawn_and_wait(timeout)
                except _PortInUseError as exc:
                    if attempt == attempts:
                        raise StepCAStartError(str(exc)) from None
                    old_port, self.port = self.port, _free_port()
                    _log.info("port %d was taken; retrying on %d", old_port, self.port)
                    self._write_config()
                else:
                    return

    def _spawn_and_wait(self, timeout: float) -> None:
        offset = self._log_size()
        env = dict(os.environ)
        # step's libraries create $STEPPATH (default ~/.step) at start-up: keep it in workdir.
        env["STEPPATH"] = str(self.workdir / "step")
        argv = [
            str(self.binary),
            "--password-file",
            str(self.password_file),
            str(self.config_path),
        ]
        if self.resolv_conf is not None:
            # exec keeps step-ca's PID the one we signal and wait for.
            mount = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
            argv = ["unshare", "-m", "sh", "-c", mount, str(self.resolv_conf), *argv]
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _registry.add(process)
        self._process = process
        try:
            self._wait_healthy(process, started, timeout, offset)
        except BaseException:
            self.kill()
            raise
        self.last_startup_s = time.monotonic() - started
        _log.debug(
            "step-ca pid %d healthy on port %d after %.1f ms",
            process.pid,
            self.port,
            self.last_startup_s * 1000,
        )

    def _wait_healthy(
        self, process: subprocess.Popen[bytes], started: float, timeout: float, offset: int
    ) -> None:
        deadline = started + timeout
        last_error = "no answer yet"
        # Short first: if another process squats on the port, a request hangs until it times
        # out while our step-ca has long exited. Grows on timeouts in case the host is slow.
        request_timeout = 0.25
        with self.http_client() as client:
            while True:
                if process.poll() is not None:
                    tail = self._log_tail(offset)
                    message = (
                        f"step-ca exited with code {process.returncode} on port {self.port}:\n"
                        f"{tail}"
                    )
                    if _ADDRESS_IN_USE in tail:
                        raise _PortInUseError(message)
                    raise StepCAStartError(message)
                try:
                    response = client.get("/health", timeout=request_timeout)
                except httpx.TimeoutException as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    request_timeout = min(request_timeout * 2, 2.0)
                except httpx.TransportError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                if time.monotonic() > deadline:
                    raise StepCAStartError(
                        f"step-ca did not answer /health with 200 within {timeout} s "
                        f"(last: {last_error}):\n{self._log_tail(offset)}"
                    )
                time.sleep(_POLL_INTERVAL_S)

    def _provisioners_match(self, client: httpx.Client) -> bool:
        try:
            listed = _list_provisioners(client)
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        expected = sorted((str(p.get("name")), _kid(p)) for p in self._provisioners)
        actual = sorted((str(p.get("name")), _kid(p)) for p in listed)
        return expected == actual

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, offset: int) -> str:
        lines = self._read_log(offset).splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else f"(nothing logged; see {self.log_path})"


class _PortInUseError(Exception):
    """step-ca could not bind its port (raced by another process)."""


def _checked_provisioners(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    names = [entry.get("name") for entry in entries]
    duplicates = sorted({str(name) for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate provisioner names: {duplicates}")
    return [copy.deepcopy(dict(entry)) for entry in entries]


def _kid(entry: Mapping[str, Any]) -> str | None:
    key = entry.get("key")
    if isinstance(key, Mapping):
        kid = key.get("kid")
        return str(kid) if kid is not None else None
    return None


def _serving_after_reload(log_text: str) -> bool:
    """Whether step-ca logged that it serves again after a ``reloading ...`` line."""
    start = log_text.find("reloading")
    return start >= 0 and "Serving HTTP" in log_text[start:]


def _list_provisioners(client: httpx.Client) -> list[Mapping[str, Any]]:
    """Every provisioner step-ca serves, following ``nextCursor`` pagination."""
    listed: list[Mapping[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        response = client.get("/1.0/provisioners", params=params)
        response.raise_for_status()
        body = response.json()
        listed.extend(body["provisioners"])
        cursor = body.get("nextCursor") or ""
        if not cursor:
            break
    return listed
