"""The ACME connector against Debian's Pebble: real http-01 and dns-01 validation, EAB,
alternate chains, key rollover, revocation reasons read back from Pebble."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certctl_acme._challenges import TlsAlpnResponder
from certctl_acme._jose import generate_account_key
from certctl_acme.testing import Pebble, eab_example_keys
from certctl_core import (
    AuthenticationError,
    ConfigError,
    PolicyViolationError,
    RejectedError,
    RevocationReason,
    UnsupportedCapabilityError,
)
from tests.acme.conftest import DNS_HOOK, HOOK_ENV, BuildIssuer, PebbleEnv, request_for

pytestmark = [pytest.mark.anyio, pytest.mark.acme]


def _hook_env(monkeypatch: pytest.MonkeyPatch, env: PebbleEnv, log: Path) -> None:
    monkeypatch.setenv("CHALLTESTSRV_URL", env.dns.management_url)
    monkeypatch.setenv("HOOK_LOG", str(log))


async def test_http01_with_real_validation_and_reason_recorded(
    pebble: PebbleEnv, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(pebble.config())
    request = request_for("www.example.test", "api.example.test")
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
    await issuer.revoke(issued.serial, RevocationReason.SUPERSEDED)
    status = pebble.pebble.cert_status(issued.serial)
    assert status is not None and status["Status"] == "Revoked" and status["Reason"] == 4


async def test_ipv6_identifier(pebble: PebbleEnv, make_issuer: BuildIssuer) -> None:
    # Pebble 2.4 validates an IP identifier at the address itself: ::1 is this host.
    issuer = await make_issuer(pebble.config(http_address=f"[::1]:{pebble.pebble.http_port}"))
    issued = await issuer.issue(request_for("::1"))
    assert [str(ip) for ip in issued.sans.ips] == ["::1"]


async def test_dns01_for_a_name_and_its_wildcard_cleans_up(
    pebble: PebbleEnv, make_issuer: BuildIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    _hook_env(monkeypatch, pebble, log)
    issuer = await make_issuer(
        pebble.config(challenge="dns-01", dns_hook=DNS_HOOK, dns_hook_env=HOOK_ENV)
    )
    request = request_for("dns.example.test", "*.dns.example.test")
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
    calls = log.read_text().splitlines()
    presented = sorted(c.split(" ", 1)[1] for c in calls if c.startswith("present"))
    cleaned = sorted(c.split(" ", 1)[1] for c in calls if c.startswith("cleanup"))
    assert len(presented) == 2 and presented == cleaned  # both, each cleaned up
    assert all(" _acme-challenge.dns.example.test. " in c for c in calls)
    history = pebble.dns.txt_queries("_acme-challenge.dns.example.test")
    assert history, "Pebble never asked the DNS for the TXT record"


async def test_failing_dns_hook_is_reported_and_cleaned_up(
    pebble: PebbleEnv, make_issuer: BuildIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    _hook_env(monkeypatch, pebble, log)
    monkeypatch.setenv("HOOK_FAIL", "present")
    issuer = await make_issuer(
        pebble.config(challenge="dns-01", dns_hook=DNS_HOOK, dns_hook_env=HOOK_ENV)
    )
    with pytest.raises(RejectedError, match="dns_hook failed") as caught:
        await issuer.issue(request_for("fail.example.test"))
    assert caught.value.ca_message == "refused by the test"
    actions = [line.split(" ")[0] for line in log.read_text().splitlines()]
    assert actions == ["present", "cleanup"]


async def test_dns_hook_gets_no_server_secret_and_its_output_is_scrubbed(
    pebble: PebbleEnv, make_issuer: BuildIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    _hook_env(monkeypatch, pebble, log)
    # What certctl-server's environment holds: none of it may reach the hook.
    monkeypatch.setenv("CERTCTL_SERVER_KEY", "server-key-5ecret")
    monkeypatch.setenv("CERTCTL_DATABASE_URL", "postgresql://u:db-5ecret@db/certctl")
    monkeypatch.setenv("CERTCTL_ACME_EAB_HMAC_KEY", "eab-5ecret")
    monkeypatch.setenv("STEPCA_PASSWORD", "ca-5ecret")
    monkeypatch.setenv("DNS_API_TOKEN", "dns-5ecret")  # passed on purpose, then echoed
    monkeypatch.setenv("HOOK_FAIL", "present")
    monkeypatch.setenv("HOOK_FAIL_OUTPUT", "token dns-5ecret refused; api_key=other-5ecret")
    issuer = await make_issuer(
        pebble.config(
            challenge="dns-01", dns_hook=DNS_HOOK, dns_hook_env=[*HOOK_ENV, "DNS_API_TOKEN"]
        )
    )
    with pytest.raises(RejectedError, match="dns_hook failed") as caught:
        await issuer.issue(request_for("secret.example.test"))
    inherited = set((tmp_path / "hook.log.env").read_text().split())
    assert {"HOOK_LOG", "DNS_API_TOKEN", "CERTCTL_ACME_TXT_VALUE", "PATH"} <= inherited
    leaked = {"CERTCTL_SERVER_KEY", "CERTCTL_DATABASE_URL", "CERTCTL_ACME_EAB_HMAC_KEY"}
    assert inherited & (leaked | {"STEPCA_PASSWORD"}) == set()
    shown = f"{caught.value} {caught.value.ca_message} {caught.value!r}"
    assert "5ecret" not in shown and "api_key=***" in shown, shown


async def test_wildcard_with_http01_names_the_offered_challenges(
    pebble: PebbleEnv, make_issuer: BuildIssuer
) -> None:
    issuer = await make_issuer(pebble.config())
    with pytest.raises(PolicyViolationError, match="dns-01"):
        await issuer.issue(request_for("*.wild.example.test"))


async def test_webroot_mode(pebble: PebbleEnv, make_issuer: BuildIssuer, tmp_path: Path) -> None:
    webroot = tmp_path / "www"
    webroot.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(webroot), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", pebble.pebble.http_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        issuer = await make_issuer(pebble.config(webroot=str(webroot)))
        await issuer.issue(request_for("webroot.example.test"))
    finally:
        server.shutdown()
        server.server_close()
    assert list((webroot / ".well-known" / "acme-challenge").iterdir()) == []  # cleaned


async def test_alternate_chain_is_selected_by_issuer_name(
    pebble: PebbleEnv, make_issuer: BuildIssuer
) -> None:
    default = await (await make_issuer(pebble.config())).issue(request_for("chain.example.test"))
    default_top = default.chain[-1].issuer
    cn = x509.oid.NameOID.COMMON_NAME
    # PEBBLE_ALTERNATE_ROOTS=1: a second chain to another root, linked rel="alternate".
    roots = []
    with pebble.pebble.client() as client:
        for index in (0, 1):
            answer = client.get(f"{pebble.pebble.management_url}/roots/{index}")
            roots.append(x509.load_pem_x509_certificate(answer.content))
    other = next(r for r in roots if r.subject != default_top)
    wanted = str(other.subject.get_attributes_for_oid(cn)[0].value)
    issuer = await make_issuer(pebble.config(preferred_chain=wanted))
    issued = await issuer.issue(request_for("chain.example.test"))
    assert issued.chain[-1].issuer == other.subject


async def test_account_key_rollover_then_issue(pebble: PebbleEnv, make_issuer: BuildIssuer) -> None:
    issuer = await make_issuer(pebble.config())
    kid = await issuer.account_url()
    before = await issuer.issue(request_for("rolled.example.test"))
    new = generate_account_key()
    await issuer.rollover_account_key(new.pem())
    assert issuer.account_key.thumbprint == new.thumbprint
    await issuer.issue(request_for("rolled.example.test"))
    # What the account issued before the rollover is still its to revoke.
    assert not (await issuer.revoke(before.serial)).already_revoked
    again = await make_issuer(pebble.config(account_key=new.pem()))
    assert await again.account_url() == kid  # the new key finds the same account


@pytest.fixture(scope="module")
def eab_pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    with Pebble.start(
        tmp_path_factory.mktemp("pebble-eab"), eab=eab_example_keys(), always_valid=True
    ) as running:
        yield running


def _eab_config(pebble: Pebble, **extra: object) -> dict[str, object]:
    return {
        "account_key": generate_account_key().pem(),  # EAB binds one account: required
        "directory_url": pebble.directory_url,
        "tls_root_path": str(pebble.tls_root),
        "terms_of_service_agreed": True,
        "http_address": "127.0.0.1:0",
        "poll_interval_seconds": 0.05,
        **extra,
    }


async def test_eab_with_the_shipped_example_key_issues(
    eab_pebble: Pebble, make_issuer: BuildIssuer
) -> None:
    keys = eab_example_keys()
    issuer = await make_issuer(_eab_config(eab_pebble, eab_kid="kid-1", eab_hmac_key=keys["kid-1"]))
    await issuer.issue(request_for("eab.example.test"))
    # The same key as some CAs print it: base64 padding, surrounding blanks.
    padded = await make_issuer(
        _eab_config(eab_pebble, eab_kid="kid-2", eab_hmac_key=f" {keys['kid-2']}== \n")
    )
    await padded.account_url()


async def test_eab_missing_or_wrong_is_an_authentication_error_without_the_key(
    eab_pebble: Pebble, make_issuer: BuildIssuer
) -> None:
    keys = eab_example_keys()
    missing = await make_issuer(_eab_config(eab_pebble))
    with pytest.raises(AuthenticationError, match="externalAccountRequired"):
        await missing.issue(request_for("eab.example.test"))
    wrong = await make_issuer(_eab_config(eab_pebble, eab_kid="kid-1", eab_hmac_key=keys["kid-2"]))
    with pytest.raises(AuthenticationError, match="unauthorized") as caught:
        await wrong.issue(request_for("eab.example.test"))
    assert keys["kid-2"] not in str(caught.value) and keys["kid-2"] not in repr(wrong)


def test_eab_needs_both_fields_and_an_account_key() -> None:
    from certctl_acme import AcmeConfig

    with pytest.raises(ConfigError, match="both eab_kid and eab_hmac_key"):
        AcmeConfig.from_mapping({"directory_url": "https://ca.test/dir", "eab_kid": "kid-1"})
    eab = {"eab_kid": "kid-1", "eab_hmac_key": eab_example_keys()["kid-1"]}
    with pytest.raises(ConfigError) as caught:
        AcmeConfig.from_mapping({"directory_url": "https://ca.test/dir", **eab})
    (problem,) = caught.value.problems
    assert problem.field == "account_key" and "openssl genpkey" in (problem.hint or "")
    key = generate_account_key().pem()
    AcmeConfig.from_mapping({"directory_url": "https://ca.test/dir", "account_key": key, **eab})


async def test_renewal_info_is_not_declared_by_default_where_the_ca_has_no_ari(
    pebble: PebbleEnv, make_issuer: BuildIssuer
) -> None:
    config = pebble.config()
    del config["renewal_info"]
    issuer = await make_issuer(config)  # Debian 12's Pebble 2.4: no renewalInfo
    issued = await issuer.issue(request_for("noari.example.test"))
    assert "renewal_info" not in issuer.capabilities.names()
    with pytest.raises(UnsupportedCapabilityError):
        await issuer.renewal_info(issued.certificate)
    line = next(c for c in (await issuer.check()).checks if c.name == "renewal_info")
    assert line.ok is None and "not offered" in line.detail
    declared = await make_issuer(pebble.config(renewal_info=True))
    line = next(c for c in (await declared.check()).checks if c.name == "renewal_info")
    assert line.ok is False  # declared where the CA has none: check() says so


async def test_tls_alpn01_with_real_validation(pebble: PebbleEnv, make_issuer: BuildIssuer) -> None:
    issuer = await make_issuer(
        pebble.config(challenge="tls-alpn-01", tls_address=f"127.0.0.1:{pebble.pebble.tls_port}")
    )
    request = request_for("alpn.example.test", "127.0.0.1")  # an IP: SNI is its reverse name
    issued = await issuer.issue(request)
    assert issued.sans.same_as(request.sans)
    responder = TlsAlpnResponder._by_address[("127.0.0.1", pebble.pebble.tls_port)]
    assert not responder.contexts and responder._server is None  # stopped once done


async def test_cancelled_dns01_order_cleans_up_its_record(
    pebble: PebbleEnv, make_issuer: BuildIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    _hook_env(monkeypatch, pebble, log)
    issuer = await make_issuer(
        pebble.config(
            challenge="dns-01", dns_hook=DNS_HOOK, dns_hook_env=HOOK_ENV, dns_propagation_seconds=30
        )
    )
    task = asyncio.create_task(issuer.issue(request_for("cancel.example.test")))
    for _ in range(200):  # until the record is published (the hook is a subprocess)
        if log.exists() and "present" in log.read_text():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    actions = [line.split(" ")[0] for line in log.read_text().splitlines()]
    assert actions == ["present", "cleanup"]


async def test_names_differing_only_in_case_are_one_identifier(
    pebble: PebbleEnv, make_issuer: BuildIssuer
) -> None:
    # The order names it once (pinned in test_misbehaviour.py); Pebble accepts the CSR
    # that still lists it twice.
    issuer = await make_issuer(pebble.config())
    issued = await issuer.issue(request_for("Dup.Example.test", "dup.example.test"))
    assert {n.lower() for n in issued.sans.dns} == {"dup.example.test"}
