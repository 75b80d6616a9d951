"""Reading a small file a config names, safely: bounded, regular files only.

Every connector reads files its config names (keys, password files, roots), and the
registry fingerprints them. A path an operator (or an API caller) chose may be a FIFO
with no writer, a socket, ``/dev/zero`` or a huge file; reading it naively blocks the
reader forever or exhausts memory. :func:`read_regular_file` is the one reader.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["FileTooLargeError", "NotRegularFileError", "read_regular_file"]


class NotRegularFileError(OSError):
    """The path names a FIFO, socket, device or directory, not a plain file."""


class FileTooLargeError(OSError):
    """The file holds more than the reader's limit."""


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The content of the regular file at ``path``, at most ``limit`` bytes.

    Opened with O_NONBLOCK and checked with fstat before any read, so a FIFO without a
    writer does not block; reads at most ``limit + 1`` bytes.

    Raises:
        NotRegularFileError: not a regular file.
        FileTooLargeError: longer than ``limit`` bytes.
        OSError: it cannot be opened or read (``strerror`` says why).
        ValueError: the path contains a NUL byte.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(
                errno.EINVAL, "not a regular file (a FIFO, socket, device or directory)"
            )
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLargeError(errno.EFBIG, f"larger than {limit} bytes")
    return b"".join(chunks)
