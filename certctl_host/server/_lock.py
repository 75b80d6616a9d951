"""One server per data directory: an exclusive ``flock`` on ``<data_dir>/server.lock``.

The lock is held for the server's lifetime and released by the kernel when the process
ends, however it ends (no stale lock after a crash). The file holds the owner's pid, for
the message a second server prints. ``certctl`` commands with ``--data-dir`` do not take
it: they share the store with the server (SQLite serialises them) but refuse issuers
whose connector must run in one process only (Local CA).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from certctl_core.errors import ConfigError, ConfigProblem

__all__ = ["LOCK_FILE", "DataDirLock"]

LOCK_FILE = "server.lock"


class DataDirLock:
    """Hold with :meth:`acquire`, give back with :meth:`release` (idempotent)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raises ConfigError (naming the holder's pid) if another server
        holds it, or if the lock file cannot be opened."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                [
                    ConfigProblem(
                        "data_dir",
                        f"the lock file {self.path} cannot be opened: {exc.strerror}",
                        "the server user must be able to write the data directory",
                    )
                ]
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode("ascii").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise ConfigError(
                [
                    ConfigProblem(
                        "data_dir",
                        f"{self.path.parent} is in use by another certctl server{who}",
                        "one server per data directory: stop the other one, or give this "
                        "one its own data_dir",
                    )
                ]
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
