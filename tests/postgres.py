"""A real PostgreSQL cluster for the tests: Debian's server binaries, one cluster per test
session in a temp directory, on a free loopback port, stopped at the end.

PostgreSQL refuses to run as root, so as root (CI) ``initdb`` and ``pg_ctl`` run as the
``postgres`` user (made by Debian's ``postgresql`` package) in a directory it owns. Clients
connect over TCP with a password (SCRAM), as a deployment would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

BIN = Path(os.environ.get("CERTCTL_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "certctl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """``initdb`` + ``pg_ctl`` in a fresh directory; :meth:`url` gives a DSN per database."""

    def __init__(self) -> None:
        if not (BIN / "initdb").exists():
            raise RuntimeError(
                f"PostgreSQL server binaries are missing in {BIN}: run scripts/setup.sh "
                "(it installs Debian's postgresql)"
            )
        self.root = Path(tempfile.mkdtemp(prefix="certctl-pg-"))
        self.data = self.root / "data"
        self.password = "pg-" + secrets.token_urlsafe(18)
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self._databases = 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        self._run(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        config = self.data / "postgresql.conf"
        with config.open("a") as out:
            out.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def _run(self, argv: Sequence[str]) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=120, cwd=self.root
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[-1]} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        self._run(
            [str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start"]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres", *, port: int | None = None) -> str:
        return (
            f"postgresql://{USER}:{self.password}@127.0.0.1:{port or self.port}/{database}"
            "?connect_timeout=5"
        )

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"t{self._databases}_{secrets.token_hex(3)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # name made here, not from input
        return self.url(name)

    def cleanup(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def cluster() -> Iterator[PostgresCluster]:
    running = PostgresCluster()
    try:
        running.start()
        yield running
    finally:
        running.cleanup()
