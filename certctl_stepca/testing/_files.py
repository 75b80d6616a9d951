"""Small file-writing helpers shared by the testing kit modules."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_private"]


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path``, created with ``mode`` so it is never wider, and return it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have narrowed it
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` atomically (temp file in the same directory + rename)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
