"""Configuration: every problem at once, password sources, secrets kept out of errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from certctl_core import ConfigError, Secret
from certctl_localca import PASSWORD_ENV, LocalCAConfig, build_localca_issuer

from .conftest import PASSWORD


def test_every_problem_is_reported_when_config_has_several(tmp_path: Path) -> None:
    bad = {
        "validity_days": -3,
        "crl_url": "ftp://nope",
        "crl_validity_hours": "soon",
        "ca_cert_file": str(tmp_path / "ca.pem"),
        "profiles": {"mail": {"extended_key_usage": ["emailProtection", "flying"]}},
        "reject_unknown_profiles": "maybe",  # "yes" is a flag word since ConfigReader
        "colour": "blue",
    }
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(bad, env={})
    fields = {p.field for p in caught.value.problems}
    assert fields == {
        "state_dir",
        "key_password",
        "validity_days",
        "crl_url",
        "crl_validity_hours",
        "ca_key_file",
        "profiles.mail.extended_key_usage",
        "reject_unknown_profiles",
        "colour",
    }
    assert "9 problems" in str(caught.value)


def test_unknown_key_and_bad_value_are_reported_in_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(
            {"state_dir": str(tmp_path), "key_password": "pw", "validty_days": 7, "ca_name": 5},
            env={},
        )
    problems = {p.field: p for p in caught.value.problems}
    assert set(problems) == {"validty_days", "ca_name"}
    assert problems["validty_days"].hint == "did you mean 'validity_days'?"


def test_password_is_read_from_file_when_key_password_file_is_set(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-from-file\n")
    config = LocalCAConfig.from_mapping(
        {"state_dir": str(tmp_path), "key_password_file": str(secret_file)}, env={}
    )
    assert config.key_password.reveal() == "s3cret-from-file"
    assert "s3cret" not in repr(config)


def test_password_comes_from_env_when_not_in_config(tmp_path: Path) -> None:
    config = LocalCAConfig.from_mapping({"state_dir": str(tmp_path)}, env={PASSWORD_ENV: "envpw"})
    assert config.key_password == Secret("envpw")


def test_both_password_sources_are_refused_when_given_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(
            {"state_dir": str(tmp_path), "key_password": "a", "key_password_file": "/x"}, env={}
        )
    assert [p.field for p in caught.value.problems] == ["key_password"]


def test_missing_password_file_is_a_problem_when_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(
            {"state_dir": str(tmp_path), "key_password_file": str(tmp_path / "nope")}, env={}
        )
    assert [p.field for p in caught.value.problems] == ["key_password_file"]


def test_defaults_and_profiles_apply_when_config_is_minimal(tmp_path: Path) -> None:
    config = LocalCAConfig.from_mapping(
        {
            "state_dir": str(tmp_path),
            "key_password": "pw",
            "validity_days": 7,
            "profiles": {"signer": {"extended_key_usage": ["codeSigning"]}},
        },
        env={},
    )
    assert config.validity == dt.timedelta(days=7)
    assert config.crl_validity == dt.timedelta(hours=24)
    assert set(config.profiles) == {"default", "tls-server", "tls-client", "signer"}
    assert config.profile("nonexistent") == config.profiles["default"]


def test_unknown_profile_is_none_when_strict(tmp_path: Path) -> None:
    config = LocalCAConfig.from_mapping(
        {"state_dir": str(tmp_path), "key_password": "pw", "reject_unknown_profiles": True},
        env={},
    )
    assert config.profile("nonexistent") is None


@pytest.mark.anyio
async def test_wrong_password_is_a_config_error_when_reopening(tmp_path: Path) -> None:
    first = await build_localca_issuer("x", {"state_dir": str(tmp_path), "key_password": PASSWORD})
    await first.close()
    with pytest.raises(ConfigError) as caught:
        await build_localca_issuer(
            "x", {"state_dir": str(tmp_path), "key_password": "wrong-password"}
        )
    assert [p.field for p in caught.value.problems] == ["key_password"]
    assert caught.value.issuer_id == "x"
    assert "wrong-password" not in str(caught.value)


@pytest.mark.anyio
async def test_factory_raises_config_error_when_config_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError):
        await build_localca_issuer("x", "state_dir=/tmp")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_incomplete_state_is_refused_when_a_ca_file_is_missing(tmp_path: Path) -> None:
    first = await build_localca_issuer("x", {"state_dir": str(tmp_path), "key_password": PASSWORD})
    await first.close()
    (tmp_path / "intermediate.key").unlink()
    with pytest.raises(ConfigError, match=r"intermediate\.key missing"):
        await build_localca_issuer("x", {"state_dir": str(tmp_path), "key_password": PASSWORD})
