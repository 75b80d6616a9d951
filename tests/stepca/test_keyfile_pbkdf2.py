"""jwcrypto's process-wide PBKDF2 limit: one book of grants for every PBES2 user.

The connector (loading a key file) and the harness (encrypting a new key) both need more
PBKDF2 rounds than jwcrypto allows by default, from any thread, at the same time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from jwcrypto import jwa

from certctl_core import ConfigError, Secret
from certctl_stepca._keyfile import (
    MAX_PBKDF2_ITERATIONS,
    allow_pbkdf2_iterations,
    load_provisioner_key,
)
from certctl_stepca.testing import make_provisioner_key

PASSWORD = "pbkdf2 under load"
# All above jwcrypto's default of 16,384, all different, cheap enough to repeat.
ROUNDS = (20_000, 30_000, 45_000)
REPEATS = 8
#: Rounds of the whole scene: one interleaving rarely goes wrong; a few almost always do.
SCENES = 4


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every 10 µs, so that the threads' blocks interleave on every run."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_keys_load_and_encrypt_when_threads_use_pbkdf2_at_once(tmp_path: Path) -> None:
    before = jwa.default_max_pbkdf2_iterations
    files = []
    for rounds in ROUNDS:
        made = make_provisioner_key(f"p{rounds}", PASSWORD, p2c=rounds)
        files.append((made.write_key_file(tmp_path / f"{rounds}.json"), made.kid))

    def load(start: threading.Barrier, path: Path, kid: str) -> None:  # the connector's path
        start.wait()
        for _ in range(REPEATS):
            assert load_provisioner_key(path, Secret(PASSWORD)).kid == kid

    def encrypt(start: threading.Barrier, rounds: int) -> None:  # the harness's path
        start.wait()
        for _ in range(REPEATS):
            make_provisioner_key("m", PASSWORD, p2c=rounds)

    for scene in range(SCENES):
        start = threading.Barrier(2 * len(ROUNDS))
        with ThreadPoolExecutor(2 * len(ROUNDS)) as pool:
            futures = [pool.submit(load, start, path, kid) for path, kid in files]
            futures += [pool.submit(encrypt, start, rounds) for rounds in ROUNDS]
        failures = [repr(f.exception()) for f in futures if f.exception() is not None]
        assert not failures, f"scene {scene}: {len(failures)} threads failed: {failures}"
        assert jwa.default_max_pbkdf2_iterations == before, f"scene {scene}: limit left raised"


def test_pbkdf2_limit_is_the_largest_grant_when_blocks_overlap_out_of_order() -> None:
    before = jwa.default_max_pbkdf2_iterations
    small, large = allow_pbkdf2_iterations(100_000), allow_pbkdf2_iterations(600_000)
    small.__enter__()
    assert jwa.default_max_pbkdf2_iterations == max(before, 100_000)
    large.__enter__()
    assert jwa.default_max_pbkdf2_iterations == max(before, 600_000)
    small.__exit__(None, None, None)  # the first in leaves first, as threads may
    assert jwa.default_max_pbkdf2_iterations == max(before, 600_000)
    large.__exit__(None, None, None)
    assert jwa.default_max_pbkdf2_iterations == before


def test_pbkdf2_limit_is_restored_when_the_block_raises() -> None:
    before = jwa.default_max_pbkdf2_iterations
    with pytest.raises(RuntimeError), allow_pbkdf2_iterations(200_000):
        raise RuntimeError("boom")
    assert jwa.default_max_pbkdf2_iterations == before


@pytest.mark.parametrize("rounds", [0, -1, MAX_PBKDF2_ITERATIONS + 1, True])
def test_pbkdf2_grant_is_refused_when_out_of_range(rounds: int) -> None:
    before = jwa.default_max_pbkdf2_iterations
    with pytest.raises(ValueError, match="iterations"), allow_pbkdf2_iterations(rounds):
        pass
    assert jwa.default_max_pbkdf2_iterations == before


def test_wrong_password_is_a_typed_error_when_the_limit_is_granted(tmp_path: Path) -> None:
    made = make_provisioner_key("p", PASSWORD, p2c=20_000)
    path = made.write_key_file(tmp_path / "key.json")
    with pytest.raises(ConfigError, match="wrong password") as caught:
        load_provisioner_key(path, Secret("not " + PASSWORD))
    assert caught.value.problems[0].field == "provisioner_password"
    assert PASSWORD not in str(caught.value)
