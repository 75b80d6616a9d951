"""The server key and the sealing of secret config values at rest (AES-256-GCM).

The key is 32 random bytes, written base64url in ``<data_dir>/server.key`` (mode 0600) on
first start, or given in ``CERTCTL_SERVER_KEY`` (same encoding; it wins over the file).
A sealed value is stored as ``{"$encrypted": "v1.<base64url(nonce || ciphertext+tag)>"}``;
the associated data binds it to its issuer and field, so a sealed value copied to another
issuer or field does not decrypt. The data directory keeps a sealed check value, so a
wrong key is refused at start with a clear error instead of failing on the first read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from certctl_core.errors import ConfigProblem
from certctl_host.storage._errors import ServerKeyError

__all__ = ["KEY_ENV", "KEY_FILE", "SEALED_MARK", "ServerKey"]

KEY_ENV = "CERTCTL_SERVER_KEY"
KEY_FILE = "server.key"
SEALED_MARK = "$encrypted"
_VERSION = "v1."
_NONCE = 12


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64d(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_problem(field: str, message: str, hint: str) -> ServerKeyError:
    return ServerKeyError([ConfigProblem(field, message, hint)])


class ServerKey:
    """The AES-256-GCM key that seals secrets at rest. ``repr`` never shows it."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise _key_problem(
                KEY_ENV, "the server key must be 32 bytes", "generate one with: certctl keygen"
            )
        self._aead = AESGCM(key)
        self._key = key

    def __repr__(self) -> str:
        return "ServerKey('********')"

    @staticmethod
    def generate_text() -> str:
        """A fresh key in the file / environment encoding."""
        return _b64e(secrets.token_bytes(32))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> ServerKey:
        """Parse the base64url text of a key; ``source`` names where it came from."""
        try:
            raw = _b64d(text)
        except (binascii.Error, ValueError):
            raise _key_problem(
                source, "is not base64url text", "it must hold 32 random bytes, base64url"
            ) from None
        if len(raw) != 32:
            raise _key_problem(
                source, f"decodes to {len(raw)} bytes, not 32", "generate a new 32-byte key"
            )
        return cls(raw)

    @classmethod
    def load_or_create(cls, data_dir: Path, env: Mapping[str, str]) -> ServerKey:
        """The key from ``CERTCTL_SERVER_KEY``, else from ``data_dir/server.key``,
        creating that file (0600, atomically: two processes starting at once agree)."""
        from_env = env.get(KEY_ENV)
        if from_env:
            return cls.from_text(from_env, source=KEY_ENV)
        path = data_dir / KEY_FILE
        if not path.exists():
            try:
                cls._create(data_dir, path)
            except OSError as exc:
                raise _key_problem(
                    str(path),
                    f"cannot be created: {exc.strerror or type(exc).__name__}",
                    f"the server user must be able to write {data_dir} (or set {KEY_ENV})",
                ) from None
        try:
            # O_NONBLOCK and fstat first: a FIFO put there must not hang the start.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            try:
                info = os.fstat(fd)
                regular = stat.S_ISREG(info.st_mode)
                mode = info.st_mode & 0o777
                data = os.pread(fd, 4096, 0) if regular else b""
            finally:
                os.close(fd)
            text = data.decode("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not ASCII"
            raise _key_problem(
                str(path), f"cannot be read: {reason}", "restore it from backup"
            ) from None
        if not regular:
            raise _key_problem(
                str(path), "is not a regular file", "restore it from backup (a plain file)"
            )
        if mode & 0o077:
            raise _key_problem(
                str(path),
                f"is readable by others (mode {mode:o})",
                f"chmod 600 {path}",
            )
        return cls.from_text(text, source=str(path))

    @classmethod
    def _create(cls, data_dir: Path, path: Path) -> None:
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(cls.generate_text() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            # link() fails if another process created the key first: theirs wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    # -- sealing ---------------------------------------------------------------------------

    def seal(self, value: Any, context: str) -> dict[str, str]:
        """Encrypt a JSON value, bound to ``context`` (issuer and field)."""
        nonce = secrets.token_bytes(_NONCE)
        plain = json.dumps(value).encode("utf-8")
        sealed = self._aead.encrypt(nonce, plain, context.encode("utf-8"))
        return {SEALED_MARK: _VERSION + _b64e(nonce + sealed)}

    def open(self, envelope: Mapping[str, Any], context: str) -> Any:
        """Decrypt what :meth:`seal` made for the same ``context``; raises ServerKeyError."""
        text = envelope.get(SEALED_MARK)
        try:
            if isinstance(text, str) and text.startswith(_VERSION):
                raw = _b64d(text[len(_VERSION) :])
                plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode("utf-8"))
                return json.loads(plain)
        except (InvalidTag, ValueError, binascii.Error):
            pass
        raise _key_problem(
            context,
            "a stored secret does not decrypt with this server key",
            f"start the server with the key the data directory was created with "
            f"({KEY_FILE} or {KEY_ENV})",
        )


def is_sealed(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {SEALED_MARK}
