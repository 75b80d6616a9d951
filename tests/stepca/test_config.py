"""Configuration: every problem at once, env fallback and precedence, files checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from certctl_core import ConfigError
from certctl_stepca import StepCAConfig
from tests.stepca.conftest import CA, PASSWORD

pytestmark = [pytest.mark.stepca]


def fields(exc: ConfigError) -> set[str]:
    return {p.field for p in exc.problems}


def test_empty_config_reports_every_missing_field_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        StepCAConfig.from_mapping({}, env={})
    assert fields(caught.value) == {
        "ca_url",
        "provisioner_name",
        "provisioner_key_path",
        "provisioner_password",
        "root_cert_path",
    }
    assert all(p.hint for p in caught.value.problems)
    assert "5 problems" in str(caught.value)


def test_bad_values_are_all_reported_with_hints(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        StepCAConfig.from_mapping(
            {
                "ca_url": "http://ca.internal:9000/",
                "provisioner_name": "p",
                "provisioner_key_path": str(tmp_path / "missing.json"),
                "provisioner_password": "x",
                "root_fingerprint": "not-hex",
                "validity_days": "many",
                "max_retries": 99,
                "timout_seconds": 3,
            },
            env={},
        )
    assert fields(caught.value) == {
        "ca_url",
        "provisioner_key_path",
        "root_fingerprint",
        "validity_days",
        "max_retries",
        "timout_seconds",
    }


def test_ca_url_with_a_path_is_refused_because_of_the_token_audience() -> None:
    with pytest.raises(ConfigError, match="audience"):
        StepCAConfig.from_mapping({"ca_url": "https://ca.internal/step"}, env={})


def test_environment_fills_in_and_explicit_config_wins(stepca: CA) -> None:
    env = {
        "CERTCTL_STEPCA_URL": "https://env.invalid:9000",
        "CERTCTL_STEPCA_PROVISIONER": stepca.key.name,
        "CERTCTL_STEPCA_KEY_PATH": str(stepca.key_file),
        "CERTCTL_STEPCA_PASSWORD": PASSWORD,
        "CERTCTL_STEPCA_ROOT": str(stepca.process.root_file),
    }
    config = StepCAConfig.from_mapping({"ca_url": stepca.process.url}, env=env)
    assert config.ca_url == stepca.process.url
    assert config.provisioner_name == stepca.key.name
    assert config.provisioner_password.reveal() == PASSWORD
    assert config.audience("sign") == f"https://{stepca.process.url[8:]}/1.0/sign"


def test_trailing_slash_in_ca_url_does_not_break_the_audience(stepca: CA) -> None:
    config = StepCAConfig.from_mapping(stepca.config(ca_url=stepca.process.url + "/"), env={})
    assert config.audience("revoke").endswith(f":{stepca.process.port}/1.0/revoke")
    assert "//1.0" not in config.audience("revoke")


def test_password_and_password_file_together_are_refused(stepca: CA) -> None:
    with pytest.raises(ConfigError, match="keep one"):
        StepCAConfig.from_mapping(stepca.config(provisioner_password="x"), env={})


def test_config_repr_masks_the_password(stepca: CA) -> None:
    config = StepCAConfig.from_mapping(stepca.config(), env={})
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    assert "********" in repr(config)


def test_config_password_file_wins_over_password_in_environment(stepca: CA) -> None:
    env = {"CERTCTL_STEPCA_PASSWORD": "from-env", "CERTCTL_STEPCA_ROOT_FINGERPRINT": "ab" * 32}
    config = StepCAConfig.from_mapping(stepca.config(), env=env)
    assert config.provisioner_password.reveal() == PASSWORD
    assert config.root_fingerprint is None
