"""Configuration: every problem at once, password sources, secrets kept out of errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from certctl_core import CertificateRequest, ConfigError, Secret
from certctl_localca import PASSWORD_ENV, LocalCAConfig, build_localca_issuer

from .conftest import PASSWORD, make_csr


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


def _problems(tmp_path: Path, **settings: object) -> dict[str, str]:
    """The problems of a config with ``settings``, by field (message and hint)."""
    data = {"state_dir": str(tmp_path), "key_password": PASSWORD, **settings}
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(data, env={})
    return {p.field: f"{p.message} | {p.hint}" for p in caught.value.problems}


@pytest.mark.parametrize(
    "name",
    [
        "n" * 50,  # 50 + " OCSP Responder" = 65 characters, one over X.509's 64
        "é" * 25,  # 50 bytes of UTF-8: cryptography counts bytes
        "bad\x00name",
        "bad\nname",
        "tab\tname",
        "bell\x07",
        "del\x7f",
    ],
)
def test_ca_name_is_refused_when_too_long_or_has_control_characters(
    tmp_path: Path, name: str
) -> None:
    problems = _problems(tmp_path, ca_name=name)
    assert set(problems) == {"ca_name"}
    assert "49" in problems["ca_name"] or "control" in problems["ca_name"]


@pytest.mark.anyio
async def test_longest_ca_name_works_when_creating_the_ca_and_its_responder(
    tmp_path: Path,
) -> None:
    name = "n" * 47 + "é"  # 49 bytes of UTF-8: the longest accepted
    assert len(name.encode()) == 49
    issuer = await build_localca_issuer(
        "x", {"state_dir": str(tmp_path), "key_password": PASSWORD, "ca_name": name}
    )
    try:
        chain = await issuer.ca_chain()
        assert f"{name} Intermediate" in chain[0].subject.rfc4514_string()
        issued = await issuer.issue(CertificateRequest.from_csr(make_csr()))
        query = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(issued.certificate, chain[0], hashes.SHA256())
            .build()
        )
        answer = ocsp.load_der_ocsp_response(
            await issuer.ocsp(query.public_bytes(serialization.Encoding.DER))
        )
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert f"{name} OCSP Responder" in answer.certificates[0].subject.rfc4514_string()
    finally:
        await issuer.close()


def test_key_password_is_refused_when_longer_than_1023_bytes(tmp_path: Path) -> None:
    problems = _problems(tmp_path, key_password="p" * 1024)
    assert set(problems) == {"key_password"}
    assert "1023" in problems["key_password"]
    assert "p" * 20 not in problems["key_password"]  # never echoed
    LocalCAConfig.from_mapping({"state_dir": str(tmp_path), "key_password": "p" * 1023}, env={})


@pytest.mark.anyio
async def test_long_name_and_password_are_config_errors_when_building(tmp_path: Path) -> None:
    for settings in ({"ca_name": "n" * 60}, {"key_password": "é" * 600}):
        config = {"state_dir": str(tmp_path / "s"), "key_password": PASSWORD, **settings}
        with pytest.raises(ConfigError):
            await build_localca_issuer("x", config)


def test_urls_and_crl_validity_are_all_refused_when_malformed(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        crl_url="http://pki.example.test/ca.crl\r\nX-Injected: 1",
        ocsp_url="http://",
        crl_validity_hours=0.5,
    )
    assert set(problems) == {"crl_url", "ocsp_url", "crl_validity_hours"}
    assert "control" in problems["crl_url"]
    assert "host" in problems["ocsp_url"]
    assert "from 1 to" in problems["crl_validity_hours"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://pki.example.test/ca.crl",
        "ldap://pki.example.test/cn=ca",
        "file:///etc/ca.crl",
        "http:///ca.crl",
        "https://",
        "http://pki.example.test:99999/ca.crl",
        "http://pki.example.test:0/ca.crl",
        "http://[::1/ca.crl",
        "http://pki.example.test/a b.crl",
        "http://pki.example.test/\x00",
        "http://user:hunter2@pki.example.test/ca.crl",
        "http://pkí.example.test/ca.crl",
        "HTTP//pki.example.test/ca.crl",
    ],
)
def test_url_is_refused_when_not_a_usable_http_url(tmp_path: Path, url: str) -> None:
    problems = _problems(tmp_path, crl_url=url, ocsp_url=url)
    assert set(problems) == {"crl_url", "ocsp_url"}
    assert "hunter2" not in str(problems)


@pytest.mark.parametrize(
    "url",
    [
        "http://pki.example.test/ca.crl",
        "https://pki.example.test:8443/ocsp",
        "http://192.0.2.1/ca.crl",
        "http://[2001:db8::1]:8080/ocsp",
        "HTTPS://PKI.example.test/ca.crl?x=1",
    ],
)
def test_url_is_kept_when_an_http_url_with_a_host(tmp_path: Path, url: str) -> None:
    data = {"state_dir": str(tmp_path), "key_password": "pw", "crl_url": url, "ocsp_url": url}
    config = LocalCAConfig.from_mapping(data, env={})
    assert config.crl_url == url and config.ocsp_url == url


def test_crl_validity_of_one_hour_is_accepted_when_configured(tmp_path: Path) -> None:
    config = LocalCAConfig.from_mapping(
        {"state_dir": str(tmp_path), "key_password": "pw", "crl_validity_hours": 1}, env={}
    )
    assert config.crl_validity == dt.timedelta(hours=1)


def test_a_malformed_ledger_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A URL libpq cannot parse (its parse error would quote the password) is refused by
    the configuration, before any driver sees it."""
    url = "postgresql://certctl:pa%zzSECRET@db:5432/certctl"
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(
            {"state_dir": str(tmp_path), "key_password": "pw", "ledger_url": url}, env={}
        )
    assert [p.field for p in caught.value.problems] == ["ledger_url"]
    assert "SECRET" not in f"{caught.value} {caught.value!r} {caught.value.problems}"
