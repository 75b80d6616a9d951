"""Authentication failures: each cause gets its own clear error (real step-ca)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from jwcrypto import jwe, jwk

from certctl_core import AuthenticationError, ConfigError
from certctl_stepca import build_stepca_issuer
from certctl_stepca.testing import (
    Fault,
    FaultProxy,
    Replacement,
    allow_pbkdf2_iterations,
    make_provisioner_key,
)
from tests.csr import make_request
from tests.stepca.conftest import CA, PASSWORD, BuildIssuer

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


def encrypt_jwk(
    private: dict[str, object],
    password: str,
    *,
    p2c: int = 1000,
    alg: str = "PBES2-HS256+A128KW",
    enc: str = "A256GCM",
) -> str:
    header = {"alg": alg, "enc": enc, "cty": "jwk+json", "p2c": p2c}
    token = jwe.JWE(json.dumps(private).encode(), protected=json.dumps(header))
    with allow_pbkdf2_iterations(p2c):
        token.add_recipient(jwk.JWK.from_password(password))
    return str(token.serialize())


async def test_unknown_provisioner_name_is_diagnosed(make_issuer: BuildIssuer) -> None:
    issuer = await make_issuer(provisioner_name="no-such-provisioner")
    with pytest.raises(AuthenticationError) as caught:
        await issuer.issue(make_request())
    assert caught.value.status == 401
    assert "unknown to the CA" in (caught.value.likely_cause or "")


async def test_key_with_another_kid_is_diagnosed_as_rotated(
    make_issuer: BuildIssuer, tmp_path: Path
) -> None:
    other = make_provisioner_key("certctl", PASSWORD)
    key_file = other.write_key_file(tmp_path / "other.json")
    issuer = await make_issuer(provisioner_key_path=str(key_file))
    with pytest.raises(AuthenticationError) as caught:
        await issuer.issue(make_request())
    assert "kid" in (caught.value.likely_cause or "")
    assert "rotated" in (caught.value.hint or "")


async def test_key_that_does_not_match_the_published_one_is_diagnosed(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    other = json.loads(make_provisioner_key("x", PASSWORD).private_jwk_json)
    other["kid"] = stepca.key.kid  # same kid, different key: a mixed-up file
    key_file = tmp_path / "mixed.json"
    key_file.write_text(encrypt_jwk(other, PASSWORD))
    issuer = await make_issuer(provisioner_key_path=str(key_file))
    with pytest.raises(AuthenticationError) as caught:
        await issuer.issue(make_request())
    assert "does not match the public key" in (caught.value.likely_cause or "")
    report = await issuer.check()
    assert {c.name: c.ok for c in report.checks}["key_matches"] is False


async def test_clock_skew_is_diagnosed_from_the_ca_date_header(
    make_issuer: BuildIssuer, stepca: CA, proxy: FaultProxy
) -> None:
    skewed = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 600))
    provisioners = {
        "provisioners": [{"type": "JWK", "name": "certctl", "key": stepca.key.public_jwk}],
        "nextCursor": "",
    }

    def answer(status: int, doc: object) -> Replacement:
        headers = (("content-type", "application/json"), ("date", skewed))
        return Replacement(status, headers=headers, chunk=json.dumps(doc).encode())

    # Rules are tried in order: the sign refusal, the provisioner list, then any other path.
    proxy.inject(Fault.REPLACE, path="/1.0/sign", replacement=answer(401, {"message": "generic"}))
    proxy.inject(Fault.REPLACE, path="/1.0/provisioners", replacement=answer(200, provisioners))
    proxy.inject(Fault.REPLACE, replacement=answer(200, {"status": "ok"}))
    issuer = await make_issuer(ca_url=proxy.url)
    with pytest.raises(AuthenticationError) as caught:
        await issuer.issue(make_request())
    assert "clock skew" in (caught.value.likely_cause or "")
    assert "NTP" in (caught.value.hint or "")
    assert len(proxy.jtis("/1.0/sign")) == 2  # once more with a new token, then diagnosed


def _problems(exc: ConfigError) -> dict[str, str]:
    return {p.field: f"{p.message} {p.hint or ''}" for p in exc.problems}


async def test_wrong_password_with_trailing_newline_says_so(
    make_issuer: BuildIssuer,
) -> None:
    with pytest.raises(ConfigError) as caught:
        await make_issuer(provisioner_password_file=None, provisioner_password=PASSWORD + "\n")
    text = _problems(caught.value)["provisioner_password"]
    assert "wrong password" in text
    assert "trailing newline" in text
    assert PASSWORD not in str(caught.value)


async def test_wrong_password_is_a_config_error(make_issuer: BuildIssuer) -> None:
    with pytest.raises(ConfigError, match="wrong password"):
        await make_issuer(provisioner_password_file=None, provisioner_password="nope")


async def test_password_file_trailing_newline_is_trimmed(
    make_issuer: BuildIssuer, stepca: CA
) -> None:
    assert stepca.password_file.read_text().endswith("\n")
    issuer = await make_issuer()
    assert (await issuer.issue(make_request())).serial > 0


async def test_base64_wrapped_key_file_is_named_as_such(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    wrapped = tmp_path / "wrapped.b64"
    wrapped.write_bytes(base64.b64encode(stepca.key_file.read_bytes()))
    with pytest.raises(ConfigError, match="base64-wrapped"):
        await make_issuer(provisioner_key_path=str(wrapped))


@pytest.mark.parametrize("form", ["json", "compact"])
async def test_both_jwe_forms_are_accepted(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path, form: str
) -> None:
    path = stepca.key.write_key_file(tmp_path / f"key.{form}", form=form)  # type: ignore[arg-type]
    issuer = await make_issuer(provisioner_key_path=str(path))
    assert (await issuer.issue(make_request())).serial > 0


async def test_unsupported_wrapping_algorithm_is_named(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    private = json.loads(stepca.key.private_jwk_json)
    path = tmp_path / "cbc.json"
    path.write_text(encrypt_jwk(private, PASSWORD, enc="A128CBC-HS256"))
    with pytest.raises(ConfigError, match="A128CBC-HS256"):
        await make_issuer(provisioner_key_path=str(path))


async def test_hostile_iteration_count_is_refused_without_decrypting(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    header = {"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 50_000_000, "p2s": "AAAA"}
    forged = json.loads(stepca.key.encrypted_json)
    forged["protected"] = base64.urlsafe_b64encode(json.dumps(header).encode()).decode()
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(forged))
    with pytest.raises(ConfigError, match="PBKDF2 iterations"):
        await make_issuer(provisioner_key_path=str(path))


async def test_public_key_file_is_explained(
    make_issuer: BuildIssuer, stepca: CA, tmp_path: Path
) -> None:
    path = tmp_path / "public.json"
    path.write_text(json.dumps(stepca.key.public_jwk))
    with pytest.raises(ConfigError, match="public key only"):
        await make_issuer(provisioner_key_path=str(path))


@pytest.mark.parametrize("key_type", ["EC-P384", "EC-P521", "OKP-Ed25519", "RSA-2048"])
async def test_every_key_type_signs_tokens_step_ca_accepts(
    stepca: CA, tmp_path: Path, key_type: str
) -> None:
    from certctl_stepca.testing import StepCA, provisioner_entry

    key = make_provisioner_key(
        f"p-{key_type}", PASSWORD, key_type=key_type, alg="PBES2-HS512+A256KW", enc="A128GCM"
    )
    with StepCA.create(tmp_path / "ca", provisioners=[provisioner_entry(key)]) as ca:
        config = {
            "ca_url": ca.url,
            "provisioner_name": key.name,
            "provisioner_key_path": str(key.write_key_file(tmp_path / "k.json")),
            "provisioner_password": PASSWORD,
            "root_cert_path": str(ca.root_file),
        }
        issuer = await build_stepca_issuer("kt", config, env={})
        try:
            assert (await issuer.issue(make_request())).serial > 0
        finally:
            await issuer.close()


@pytest.mark.parametrize(
    "date",
    [
        "{now} GMT",
        "{now}",  # no zone
        "{now} -0000",  # RFC 5322: UTC, origin unknown
        "{now} GMT, {now} GMT",  # repeated, joined
        "not a date",
    ],
)
async def test_odd_date_headers_are_read_or_ignored_never_raised(
    make_issuer: BuildIssuer, stepca: CA, proxy: FaultProxy, date: str
) -> None:
    now = time.strftime("%a, %d %b %Y %H:%M:%S", time.gmtime())
    provisioners = {
        "provisioners": [{"type": "JWK", "name": "certctl", "key": stepca.key.public_jwk}],
        "nextCursor": "",
    }

    def answer(status: int, doc: object) -> Replacement:
        headers = (("content-type", "application/json"), ("date", date.format(now=now)))
        return Replacement(status, headers=headers, chunk=json.dumps(doc).encode())

    proxy.inject(Fault.REPLACE, path="/1.0/sign", replacement=answer(401, {"message": "generic"}))
    proxy.inject(Fault.REPLACE, path="/1.0/provisioners", replacement=answer(200, provisioners))
    proxy.inject(Fault.REPLACE, replacement=answer(200, {"status": "ok"}))
    issuer = await make_issuer(ca_url=proxy.url)

    report = await issuer.check()  # a TypeError (naive - aware) escaped here before
    [skew] = [c for c in report.checks if c.name == "clock_skew"]
    if date == "not a date":
        assert skew.ok is None
    else:
        assert skew.ok is True, skew.detail
    with pytest.raises(AuthenticationError) as caught:  # and here, diagnosing the 401
        await issuer.issue(make_request())
    assert "clock skew" not in (caught.value.likely_cause or "")
