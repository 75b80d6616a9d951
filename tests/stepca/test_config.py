"""Configuration: every problem at once, env fallback and precedence, files checked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from certctl_core import ConfigError
from certctl_stepca import StepCAConfig
from certctl_stepca.config import claim_duration, parse_go_duration
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


def test_unknown_key_and_bad_value_are_reported_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        StepCAConfig.from_mapping({"ca_urll": "https://ca.internal", "max_retries": 99}, env={})
    problems = {p.field: p for p in caught.value.problems}
    assert {"ca_urll", "max_retries", "ca_url"} <= set(problems)
    assert problems["ca_urll"].hint == "did you mean 'ca_url'?"


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


def test_international_host_becomes_punycode_for_host_header_tls_and_audience(
    stepca: CA,
) -> None:
    config = StepCAConfig.from_mapping(
        stepca.config(ca_url="https://ca.bücher.example:9000"), env={}
    )
    assert config.ca_url == "https://ca.xn--bcher-kva.example:9000"
    assert config.audience("sign") == "https://ca.xn--bcher-kva.example:9000/1.0/sign"


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"])
def test_host_that_is_no_dns_name_is_a_config_error(stepca: CA, host: str) -> None:
    with pytest.raises(ConfigError, match="not a valid DNS host name"):
        StepCAConfig.from_mapping(stepca.config(ca_url=f"https://{host}:9000"), env={})


def test_tilde_in_file_settings_means_the_home_directory(
    stepca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "key.json").write_bytes(stepca.key_file.read_bytes())
    (home / "root.crt").write_bytes(stepca.process.root_file.read_bytes())
    (home / "password").write_text(PASSWORD)
    monkeypatch.setenv("HOME", str(home))
    config = StepCAConfig.from_mapping(
        stepca.config(
            provisioner_key_path="~/key.json",
            root_cert_path="~/root.crt",
            provisioner_password_file="~/password",
        ),
        env={},
    )
    assert config.provisioner_key_path == home / "key.json"
    assert config.root_cert_path == home / "root.crt"
    assert config.provisioner_password.reveal() == PASSWORD


def test_overlong_key_path_is_a_config_error_not_an_oserror(stepca: CA) -> None:
    with pytest.raises(ConfigError, match="provisioner_key_path"):
        StepCAConfig.from_mapping(stepca.config(provisioner_key_path="/" + "k" * 5000), env={})


@pytest.mark.anyio
async def test_root_with_an_unknown_x509_version_is_a_config_error(
    stepca: CA, tmp_path: Path
) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from certctl_stepca import build_stepca_issuer

    der = x509.load_pem_x509_certificate(stepca.process.root_file.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    version_v3 = b"\xa0\x03\x02\x01\x02"
    assert version_v3 in der
    bad = tmp_path / "root-v6.der"
    bad.write_bytes(der.replace(version_v3, b"\xa0\x03\x02\x01\x05", 1))
    with pytest.raises(ConfigError, match="root_cert_path"):
        await build_stepca_issuer("v6", stepca.config(root_cert_path=str(bad)), env={})


# -- Go durations (provisioner claims) --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("24h0m0s", 86400.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5h", 1800.0),
        ("1.h", 3600.0),
        ("0", 0.0),
        ("-0", 0.0),
        ("+5m", 300.0),
        ("-2m", -120.0),
        ("300ms", 0.3),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("1\u03bcs", 1e-6),
        ("10ns", 1e-8),
        ("2562047h", 2562047 * 3600.0),
    ],
)
def test_go_durations_parse_when_valid(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "5", "m", "1d", "5m ", " 5m", "h1", "-", "+", ".", ".s", "1.2.3s", "--5m", "5M", "0s0"],
)
def test_go_durations_fail_when_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="Go duration"):
        parse_go_duration(text)


@pytest.mark.parametrize("text", ["2562048h", "9" * 400 + "h", "-2562048h"])
def test_go_durations_fail_when_beyond_go_range(text: str) -> None:
    with pytest.raises(ValueError, match="range of a Go duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("24h0m0s", dt.timedelta(hours=24)),
        ("5m0s", dt.timedelta(minutes=5)),
        ("1h0m0.5s", dt.timedelta(hours=1, milliseconds=500)),
        ("0s", None),
        ("-5m", None),
        ("", None),
        ("24 hours", None),
        ("99999999999999h", None),
        (None, None),
        (86400, None),
    ],
)
def test_claim_durations_are_none_when_absent_malformed_or_not_positive(
    claim: object, expected: dt.timedelta | None
) -> None:
    assert claim_duration(claim) == expected
