"""Tokens signed with ``cryptography`` directly are standard JWS that jwcrypto verifies.

step-ca's acceptance of every key type is proven against the real CA in test_auth; this
checks the encoding itself (RFC 7515 compact form, RFC 7518 signature formats) and that
the signer never shows its key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Literal

import pytest
from jwcrypto import jwk, jws

from certctl_core import Secret
from certctl_stepca._keyfile import load_provisioner_key
from certctl_stepca._token import TokenSigner
from certctl_stepca.testing import KEY_TYPES, make_provisioner_key, mint_token


def _part(token: str, index: int) -> dict[str, object]:
    segment = token.split(".")[index]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


@pytest.mark.parametrize("key_type", sorted(KEY_TYPES))
def test_token_verifies_with_jwcrypto_when_signed_with_each_key_type(
    tmp_path: Path, key_type: str
) -> None:
    made = make_provisioner_key(f"p-{key_type}", "pw", key_type=key_type, p2c=1000)
    key = load_provisioner_key(made.write_key_file(tmp_path / "key.json"), Secret("pw"))
    signer = TokenSigner(key)

    token = signer.mint(
        issuer="p", audience="https://ca/1.0/sign", subject="a.test", sans=["a.test"], now=1000
    )

    parsed = jws.JWS()
    parsed.deserialize(token)
    parsed.verify(jwk.JWK(**made.public_jwk))  # raises InvalidJWSSignature if wrong
    assert _part(token, 0) == {"alg": made.jws_alg, "kid": made.kid, "typ": "JWT"}
    claims = _part(token, 1)
    assert claims["iss"] == "p"
    assert claims["sub"] == "a.test"
    assert claims["sans"] == ["a.test"]
    assert claims["aud"] == "https://ca/1.0/sign"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1000, 1000, 1300)


def test_every_token_has_a_new_jti_when_minted_twice(tmp_path: Path) -> None:
    made = make_provisioner_key("p", "pw", p2c=1000)
    signer = TokenSigner(load_provisioner_key(made.write_key_file(tmp_path / "k"), Secret("pw")))
    first, second = (signer.mint(issuer="p", audience="a", subject="s") for _ in range(2))
    assert _part(first, 1)["jti"] != _part(second, 1)["jti"]
    assert "sans" not in _part(first, 1)


def test_signer_repr_hides_the_key_when_printed(tmp_path: Path) -> None:
    made = make_provisioner_key("p", "pw", p2c=1000)
    signer = TokenSigner(load_provisioner_key(made.write_key_file(tmp_path / "k"), Secret("pw")))
    private_d = str(json.loads(made.private_jwk_json)["d"])
    assert private_d not in repr(signer)
    assert private_d not in str(vars(signer))


@pytest.mark.parametrize("form", ["json", "compact"])
def test_harness_key_is_the_key_the_connector_loads_when_written_to_a_file(
    tmp_path: Path, form: Literal["json", "compact"]
) -> None:
    made = make_provisioner_key("p", "s3cret pass", key_type="OKP-Ed25519", p2c=1000)
    path = made.write_key_file(tmp_path / "k", form=form)
    loaded = load_provisioner_key(path, Secret("s3cret pass"))
    assert (loaded.kid, loaded.algorithm) == (made.kid, made.jws_alg)
    assert loaded.key.export_private(as_dict=True) == made.key.export_private(as_dict=True)
    assert "s3cret pass" not in repr(made)
    assert made.private_jwk_json not in repr(made)


def test_harness_token_is_the_connector_token_when_minted_for_the_provisioner() -> None:
    made = make_provisioner_key("prov", "pw", p2c=1000)
    token = mint_token(made, audience="https://ca/1.0/revoke", subject="1234", sans=["x"])
    parsed = jws.JWS()
    parsed.deserialize(token)
    parsed.verify(jwk.JWK(**made.public_jwk))
    assert _part(token, 0) == {"alg": made.jws_alg, "kid": made.kid, "typ": "JWT"}
    claims = _part(token, 1)
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        "prov",
        "1234",
        "https://ca/1.0/revoke",
    )
    assert claims["sans"] == ["x"]
    assert claims["exp"] == claims["iat"] + 300  # type: ignore[operator]
