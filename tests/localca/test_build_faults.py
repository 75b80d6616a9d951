"""Building or loading the CA fails only with typed errors: odd configs, damaged files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certctl_contracts.reference import ca_certificate
from certctl_core import CertctlError, ConfigError
from certctl_localca import build_localca_issuer

from .conftest import PASSWORD, config_for, write_operator_ca, write_pem


async def _build_and_close(config: Any) -> None:
    issuer = await build_localca_issuer("odd", config)
    await issuer.close()


#: Values that once escaped as raw exceptions, or sit on a bound.
_SPECIAL_VALUES = [
    "http://",
    "http://h/\r\n",
    "https://[::1",
    "http://h:99999/",
    "n" * 50,
    "p" * 1024,
    "é" * 600,
    "\udc80",
    "bad\x00",
    "",
    "0",
    "1e400",
    "nan",
    -1,
    0,
    10**400,
    float("inf"),
    True,
    [],
    {"x": {"extended_key_usage": ["serverAuth"], "key_usage": "all"}},
]

_ODD_TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), min_size=0, max_size=80
)
_ODD_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    _ODD_TEXT,
    st.sampled_from(_SPECIAL_VALUES),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)
_SETTINGS = [
    "key_password",
    "ca_name",
    "validity_days",
    "crl_url",
    "ocsp_url",
    "crl_validity_hours",
    "ocsp_validity_hours",
    "profiles",
    "reject_unknown_profiles",
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(odd=st.dictionaries(st.sampled_from(_SETTINGS), _ODD_VALUE, min_size=1, max_size=4))
def test_only_certctl_errors_escape_when_config_is_odd(odd: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = {"state_dir": os.path.join(tmp, "state"), "key_password": PASSWORD, **odd}
        with contextlib.suppress(CertctlError):
            asyncio.run(_build_and_close(config))


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a pem file\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _unencrypted_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _other_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


_DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage,
    "empty": _empty,
    "directory": _directory,
    "truncated": _truncated,
}


# root.key is only read to make the CA (it signs nothing after), so its damage shows
# on restore, not at start; an empty ledger file is a new, valid SQLite database.
_DAMAGED_FILES = [
    (name, damage)
    for name in ("root.pem", "intermediate.pem", "intermediate.key", "ledger.sqlite3")
    for damage in sorted(_DAMAGE)
    if (name, damage) != ("ledger.sqlite3", "empty")
]


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "damage"), _DAMAGED_FILES)
async def test_damaged_state_file_is_a_config_error_when_loading(
    tmp_path: Path, name: str, damage: str
) -> None:
    await _build_and_close(config_for(tmp_path))
    _DAMAGE[damage](tmp_path / name)
    with pytest.raises(ConfigError) as caught:
        await _build_and_close(config_for(tmp_path))
    assert caught.value.problems[0].field in {"state_dir", "key_password"}


@pytest.mark.anyio
@pytest.mark.parametrize("damage", [_unencrypted_key, _other_key])
async def test_replaced_key_is_a_config_error_when_loading(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    await _build_and_close(config_for(tmp_path))
    damage(tmp_path / "intermediate.key")
    with pytest.raises(ConfigError):
        await _build_and_close(config_for(tmp_path))


@pytest.mark.anyio
async def test_state_dir_is_a_config_error_when_it_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for state in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(ConfigError) as caught:
            await _build_and_close(config_for(state))
        assert [p.field for p in caught.value.problems] == ["state_dir"]


@pytest.mark.anyio
@pytest.mark.parametrize("damage", sorted(_DAMAGE))
async def test_damaged_ca_files_are_config_errors_when_configured(
    tmp_path: Path, damage: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_file, key_file, _cert = write_operator_ca(tmp_path, "Damaged CA", key)
    for target in (cert_file, key_file):
        saved = target.read_bytes()
        _DAMAGE[damage](target)
        config = config_for(
            tmp_path / "state", ca_cert_file=str(cert_file), ca_key_file=str(key_file)
        )
        with pytest.raises(ConfigError):
            await _build_and_close(config)
        if target.is_dir():
            target.rmdir()
        target.write_bytes(saved)


@pytest.mark.anyio
@pytest.mark.parametrize("value", _SPECIAL_VALUES, ids=lambda v: repr(v)[:16])
async def test_only_certctl_errors_escape_when_a_setting_is_odd(tmp_path: Path, value: Any) -> None:
    for number, key in enumerate(_SETTINGS):
        config = config_for(tmp_path / f"state-{number}", **{key: value})
        with contextlib.suppress(CertctlError):
            await _build_and_close(config)


_EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # id-ecPublicKey
_BASIC_CONSTRAINTS_OID = bytes.fromhex("0603551d13")
_KEY_USAGE_OID = bytes.fromhex("0603551d0f")


def _unknown_key_algorithm(der: bytes) -> bytes:
    return der.replace(_EC_PUBLIC_KEY_OID, _EC_PUBLIC_KEY_OID[:-1] + b"\x09")


def _duplicate_extension(der: bytes) -> bytes:
    return der.replace(_BASIC_CONSTRAINTS_OID, _KEY_USAGE_OID)


@pytest.mark.anyio
@pytest.mark.parametrize("corrupt", [_unknown_key_algorithm, _duplicate_extension])
@pytest.mark.parametrize("where", ["state_dir", "ca_cert_file"])
async def test_certificate_that_parses_but_cannot_be_used_is_a_config_error(
    tmp_path: Path, corrupt: Callable[[bytes], bytes], where: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_certificate("Odd CA", key)
    der = corrupt(cert.public_bytes(serialization.Encoding.DER))
    assert der != cert.public_bytes(serialization.Encoding.DER)
    odd = x509.load_der_x509_certificate(der)  # parses: the failure comes on use
    if where == "state_dir":
        await _build_and_close(config_for(tmp_path))
        write_pem(tmp_path / "intermediate.pem", odd)
        config = config_for(tmp_path)
    else:
        cert_file = write_pem(tmp_path / "ca.pem", odd)
        key_file = tmp_path / "ca.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(PASSWORD.encode()),
            )
        )
        config = config_for(
            tmp_path / "state", ca_cert_file=str(cert_file), ca_key_file=str(key_file)
        )
    with pytest.raises(ConfigError) as caught:
        await _build_and_close(config)
    assert caught.value.problems[0].field == where


@pytest.mark.anyio
async def test_endless_ca_file_is_a_config_error_when_configured(tmp_path: Path) -> None:
    config = config_for(tmp_path / "state", ca_cert_file="/dev/zero", ca_key_file="/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        await asyncio.wait_for(_build_and_close(config), timeout=30)
