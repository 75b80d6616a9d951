"""Reading the files named on the command line, and writing results atomically.

Writes never leave a half-written file and never replace an existing one silently:

* every file is first written to a temporary file in the target's directory, flushed
  and fsync'd; private keys are created with mode 0600 (``O_CREAT|O_EXCL``), so they
  are never readable by others, not even for an instant;
* without ``force``, the temporary file is hard-linked to the target name, which fails
  if the name exists (no check-then-write race); with ``force`` it is renamed over it;
* the directory is fsync'd so the new name survives a crash.

All files of one command are staged before the first is put in place, so a failure
while writing (disk full) leaves every target untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509

from certctl_host.cli._exit import UsageError

__all__ = [
    "MAX_INPUT_BYTES",
    "PendingFile",
    "check_targets",
    "read_certificates",
    "read_input",
    "write_files",
]

#: Largest file the CLI reads (certificates, CSRs, keys, configs).
MAX_INPUT_BYTES = 1 << 20

KEY_MODE = 0o600
PUBLIC_MODE = 0o644


@attrs.frozen
class PendingFile:
    """A file to write: where, what, and with which mode (0600 for private keys)."""

    path: Path
    data: bytes = attrs.field(repr=False)
    mode: int = PUBLIC_MODE


def read_input(path: Path, what: str) -> bytes:
    """The bytes of ``path``; raises UsageError naming ``what`` the file was for."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot read the {what} {str(path)!r}: {exc.strerror or exc}",
            hint="check the path and its permissions",
        ) from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"the {what} {str(path)!r} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def read_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (or one DER certificate), leaf first."""
    data = read_input(path, what)
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except (ValueError, x509.InvalidVersion):
        raise UsageError(
            f"the {what} {str(path)!r} holds no readable certificate",
            hint="give a PEM file starting with '-----BEGIN CERTIFICATE-----' or a DER file",
        ) from None
    return certs


def check_targets(paths: Sequence[Path], *, force: bool) -> None:
    """Fail early (before contacting any CA) if an output cannot be written.

    Raises UsageError for an existing file without ``force``, a missing directory, a
    target that is a directory, or the same path given twice.
    """
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(f"{str(path)!r} is given for two different outputs")
        seen.add(resolved)
        if path.is_dir():
            raise UsageError(f"{str(path)!r} is a directory", hint="give a file name")
        if path.exists() and not force:
            raise UsageError(
                f"refusing to overwrite {str(path)!r}",
                hint="pass --force to replace it, or choose another file name",
            )
        parent = path.parent
        if not parent.is_dir():
            raise UsageError(
                f"the directory {str(parent)!r} does not exist",
                hint="create it first (certctl does not create directories)",
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"the directory {str(parent)!r} is not writable")


def _stage(pending: PendingFile) -> Path:
    """Write ``pending`` to a new temporary file beside its target; return its path."""
    target = pending.path
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, pending.mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pending.data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _commit(tmp: Path, target: Path, *, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails with EEXIST: never replaces a file created meanwhile
    except FileExistsError:
        raise UsageError(
            f"refusing to overwrite {str(target)!r} (it appeared while certctl was working)",
            hint="pass --force to replace it, or choose another file name",
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # A file system without hard links: check, then rename (a narrow race remains).
        if target.exists():
            raise UsageError(f"refusing to overwrite {str(target)!r}") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def write_files(files: Sequence[PendingFile], *, force: bool) -> None:
    """Write every file atomically; all are staged before any target changes.

    Raises UsageError if a target exists and ``force`` is false, or cannot be written.
    """
    staged: list[tuple[Path, PendingFile]] = []
    current: Path | None = None
    try:
        for pending in files:
            current = pending.path
            staged.append((_stage(pending), pending))
        while staged:
            tmp, pending = staged[0]
            current = pending.path
            _commit(tmp, pending.path, force=force)
            staged.pop(0)
            _fsync_dir(pending.path.parent)
    except OSError as exc:
        raise UsageError(
            f"cannot write {str(current)!r}: {exc.strerror or exc}",
            hint="check the directory's permissions and free space",
        ) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
