"""Files that block on open or read (issue 15): a FIFO, a character device or a socket named
as a password file, or put where the server key belongs, is refused at once with a
ConfigProblem instead of blocking the reader (in the server: the event loop)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from certctl_core.config import ConfigReader
from certctl_core.errors import ConfigError
from certctl_host.storage import KEY_FILE, ServerKey, ServerKeyError
from certctl_localca import LocalCAConfig

BOUND = 2.0


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "secret.fifo"
    os.mkfifo(path)
    yield path
    try:  # release a reader still blocked in open() (the behaviour under test failing)
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def bounded(call: Callable[[], object]) -> object:
    """``call()``'s result or exception, failing the test if it takes longer than BOUND."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND)
    assert outcome, f"still blocked after {BOUND} s"
    return outcome[0]


def secret_problem(path: Path) -> str:
    read = ConfigReader({"password_file": str(path)}, {})

    def secret() -> object:
        return read.secret("password", file_key="password_file")

    assert bounded(secret) is None
    (problem,) = read.problems
    assert problem.field == "password_file"
    return str(problem)


def test_a_fifo_as_a_secret_file_is_refused_without_blocking(fifo: Path) -> None:
    message = secret_problem(fifo)
    assert "is not a regular file" in message
    assert "plain file" in message


def test_a_fifo_with_a_writer_that_never_writes_is_refused_without_blocking(fifo: Path) -> None:
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer open
    writer = os.open(fifo, os.O_WRONLY)
    try:
        assert "is not a regular file" in secret_problem(fifo)
    finally:
        os.close(writer)
        os.close(reader)


def test_devices_and_sockets_as_secret_files_are_refused(tmp_path: Path) -> None:
    assert "is not a regular file" in secret_problem(Path("/dev/zero"))
    assert "is not a regular file" in secret_problem(Path("/dev/null"))
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        # A socket cannot even be opened (ENXIO): reported as unreadable, not blocked on.
        assert "password_file" in secret_problem(path)


def test_a_symlink_to_a_regular_file_still_works(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("s3cret\n")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    read = ConfigReader({"password_file": str(tmp_path / "link")}, {})
    secret = read.secret("password", file_key="password_file")
    assert secret is not None
    assert secret.reveal() == "s3cret"


def test_localca_key_password_fifo_is_a_config_error(fifo: Path, tmp_path: Path) -> None:
    def parse() -> object:
        return LocalCAConfig.from_mapping(
            {"state_dir": str(tmp_path / "s"), "key_password_file": str(fifo)}, env={}
        )

    error = bounded(parse)
    assert isinstance(error, ConfigError), error
    assert "key_password_file" in str(error)
    assert "not a regular file" in str(error)


def test_a_fifo_in_place_of_the_server_key_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / KEY_FILE, 0o600)
    try:
        error = bounded(lambda: ServerKey.load_or_create(tmp_path, {}))
    finally:
        fd = os.open(tmp_path / KEY_FILE, os.O_RDWR | os.O_NONBLOCK)  # release on failure
        os.close(fd)
    assert isinstance(error, ServerKeyError), error
    assert "is not a regular file" in str(error)
