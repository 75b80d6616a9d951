"""One server per data directory: an exclusive ``flock`` on the data directory itself.

The lock is held for the server's lifetime and released by the kernel when the process
ends, however it ends (no stale lock after a crash). It is taken on the directory (opened
``O_RDONLY | O_DIRECTORY``), not on a file in it: a lock file can be deleted while its
owner runs, and the next server would then lock a new file of the same name and share
the data directory. ``<data_dir>/server.lock`` is kept only as information: it holds the
owner's pid, for the message a second server prints. ``certctl`` commands with
``--data-dir`` do not take the lock: they share the store with the server (SQLite
serialises them) but refuse issuers whose connector must run in one process only (Local CA).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from certctl_core.errors import ConfigError, ConfigProblem

__all__ = ["LOCK_FILE", "DataDirLock"]

LOCK_FILE = "server.lock"


def _problem(message: str, hint: str) -> ConfigError:
    return ConfigError([ConfigProblem("data_dir", message, hint)])


def _read_pid(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    try:
        return os.read(fd, 32).decode("ascii").strip()
    finally:
        os.close(fd)


class DataDirLock:
    """Hold with :meth:`acquire`, give back with :meth:`release` (idempotent)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir)
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raises ConfigError (naming the holder's pid when known) if
        another server holds it, or if the data directory cannot be opened."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _problem(
                f"the data directory {self.directory} cannot be opened: {exc.strerror}",
                "the server user must be able to create and open the data directory",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = _read_pid(self.path)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise _problem(
                f"{self.directory} is in use by another certctl server{who}",
                "one server per data directory: stop the other one, or give this one its "
                "own data_dir",
            ) from None
        self._fd = fd
        try:
            self._write_pid()
        except OSError as exc:
            self.release()
            raise _problem(
                f"the lock file {self.path} cannot be written: {exc.strerror}",
                "the server user must be able to write the data directory",
            ) from None

    def _write_pid(self) -> None:
        """``server.lock``: the owner's pid, for people and for a second server's message."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(self.path, flags, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        finally:
            os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
