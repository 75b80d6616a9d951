"""The ACME connector's configuration: every problem at once, secrets never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from certctl_acme import AcmeConfig, build_acme_issuer
from certctl_acme._jose import generate_account_key
from certctl_acme.testing import eab_example_keys
from certctl_core import ConfigError
from tests.acme.conftest import BuildIssuer, PebbleEnv, request_for

pytestmark = pytest.mark.anyio


def test_every_problem_is_reported_at_once_without_echoing_secrets() -> None:
    secret_key = "-----BEGIN PRIVATE KEY-----\nnot-really-a-key-7a8b9c\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as caught:
        AcmeConfig.from_mapping(
            {
                "directory_url": "http://ca.test/dir",
                "account_key": secret_key,
                "eab_kid": "kid-1",
                "eab_hmac_key": "not base64url!! secret-4d5e",
                "challenge": "tls-sni-01",
                "http_address": "nowhere",
                "poll_interval_seconds": -1,
                "unknown_key": 1,
            }
        )
    fields = {problem.field for problem in caught.value.problems}
    assert {
        "directory_url",
        "account_key",
        "eab_hmac_key",
        "challenge",
        "http_address",
        "poll_interval_seconds",
        "unknown_key",
    } <= fields
    text = str(caught.value)
    assert "7a8b9c" not in text and "secret-4d5e" not in text


def test_dns01_needs_a_hook() -> None:
    with pytest.raises(ConfigError, match="dns_hook: is required for challenge dns-01"):
        AcmeConfig.from_mapping({"directory_url": "https://ca.test/dir", "challenge": "dns-01"})


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("*:80", None, 80),
        (":8080", None, 8080),
        ("127.0.0.1:5002", "127.0.0.1", 5002),
        ("[::1]:80", "::1", 80),
    ],
)
def test_http_address(address: str, host: str | None, port: int) -> None:
    config = AcmeConfig.from_mapping(
        {"directory_url": "https://ca.test/dir", "http_address": address}
    )
    assert (config.http_host, config.http_port) == (host, port)


async def test_secrets_stay_out_of_repr_and_debug_logs(
    pebble: PebbleEnv, make_issuer: BuildIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate_account_key().pem()
    marker = key.splitlines()[1]
    config = pebble.config(account_key=key)
    caplog.set_level(logging.DEBUG)
    issuer = await make_issuer(config)
    issued = await issuer.issue(request_for("secret.example.test"))
    await issuer.revoke(issued.serial)
    report = await issuer.check()
    texts = [
        repr(issuer),
        str(issuer),
        repr(AcmeConfig.from_mapping(config)),
        repr(report.as_dict()),
    ]
    texts += [record.getMessage() for record in caplog.records]
    assert not [t for t in texts if marker in t]


async def test_eab_hmac_key_stays_out_of_repr() -> None:
    hmac_key = eab_example_keys()["kid-1"]
    config = {
        "directory_url": "https://ca.test/dir",
        "account_key": generate_account_key().pem(),
        "eab_kid": "kid-1",
        "eab_hmac_key": hmac_key,
    }
    issuer = await build_acme_issuer("eab", config)
    try:
        assert hmac_key not in repr(issuer)
        assert hmac_key not in repr(AcmeConfig.from_mapping(config))
    finally:
        await issuer.close()


def test_env_seed_describes_iss_acme_only_when_the_directory_is_set(tmp_path: Path) -> None:
    from certctl_acme.plugin import env_seed

    assert env_seed({"CERTCTL_ACME_CONTACT": "a@b.test"}) is None
    key_file = tmp_path / "account.pem"
    key_file.write_text(generate_account_key().pem())
    seed = env_seed(
        {
            "CERTCTL_ACME_DIRECTORY_URL": "https://ca.test/acme/acme/directory",
            "CERTCTL_ACME_ACCOUNT_KEY_FILE": str(key_file),
            "CERTCTL_ACME_TOS_AGREED": "true",
            "CERTCTL_ACME_EAB_KID": "kid-1",
            "CERTCTL_ACME_EAB_HMAC_KEY": eab_example_keys()["kid-1"],
        }
    )
    assert seed is not None
    issuer_id, config = seed
    assert issuer_id == "iss-acme"
    parsed = AcmeConfig.from_mapping(config)  # what the host does with a seed: build it
    assert parsed.terms_of_service_agreed and parsed.eab_kid == "kid-1"


def test_dns_hook_env_takes_names_and_refuses_certctls_own() -> None:
    base = {"directory_url": "https://ca.test/dir", "challenge": "dns-01", "dns_hook": "true"}
    config = AcmeConfig.from_mapping({**base, "dns_hook_env": "A_TOKEN_FILE, B"})
    assert config.dns_hook_env == ("A_TOKEN_FILE", "B")
    with pytest.raises(ConfigError) as caught:
        AcmeConfig.from_mapping({**base, "dns_hook_env": ["CERTCTL_SERVER_KEY", "1bad"]})
    messages = [p.message for p in caught.value.problems if p.field == "dns_hook_env"]
    assert len(messages) == 2 and "certctl's own setting" in messages[0]


async def test_a_tls_root_that_is_no_pem_is_a_config_problem(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as caught:
        await build_acme_issuer(
            "acme-test", {"directory_url": "https://ca.test/dir", "tls_root_path": str(root)}
        )
    assert [p.field for p in caught.value.problems] == ["tls_root_path"]


def test_a_padded_eab_hmac_key_is_accepted() -> None:
    key = eab_example_keys()["kid-1"]
    config = AcmeConfig.from_mapping(
        {
            "directory_url": "https://ca.test/dir",
            "account_key": generate_account_key().pem(),
            "eab_kid": "kid-1",
            "eab_hmac_key": key + "==",
        }
    )
    assert config.eab_hmac_key is not None
