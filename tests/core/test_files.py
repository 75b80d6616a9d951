"""The one bounded reader of files a config names (certctl_core.files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certctl_core.files import FileTooLargeError, NotRegularFileError, read_regular_file


def test_content_is_returned_when_a_regular_file_is_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 16)
    assert read_regular_file(path, 16) == b"x" * 16


def test_file_is_refused_when_longer_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 17)
    with pytest.raises(FileTooLargeError, match="larger than 16 bytes"):
        read_regular_file(path, 16)


def test_fifo_without_a_writer_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        read_regular_file(fifo, 1024)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/"])
def test_devices_and_directories_are_refused_when_named(path: str) -> None:
    with pytest.raises(NotRegularFileError):
        read_regular_file(path, 1024)


def test_missing_file_is_an_os_error_naming_why(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="No such file") as caught:
        read_regular_file(tmp_path / "absent", 10)
    assert not isinstance(caught.value, NotRegularFileError | FileTooLargeError)
