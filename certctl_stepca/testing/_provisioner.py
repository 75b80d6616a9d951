"""JWK provisioner keys (as ``step crypto jwk create`` makes them) and their ca.json entries."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import attrs
from cryptography.hazmat.primitives import hashes
from jwcrypto import jwe, jwk
from jwcrypto.common import base64url_encode

from certctl_stepca import _keyfile, _token
from certctl_stepca._keyfile import allow_pbkdf2_iterations
from certctl_stepca.config import parse_go_duration

from ._files import write_private

__all__ = [
    "KEY_TYPES",
    "OCSP_RESPONDER_TEMPLATE",
    "ProvisionerKey",
    "acme_provisioner_entry",
    "make_provisioner_key",
    "mint_token",
    "provisioner_entry",
]

#: key type -> (jwcrypto generate() parameters, JWS alg)
KEY_TYPES: Final[Mapping[str, tuple[Mapping[str, Any], str]]] = {
    "EC-P256": ({"kty": "EC", "crv": "P-256"}, "ES256"),
    "EC-P384": ({"kty": "EC", "crv": "P-384"}, "ES384"),
    "EC-P521": ({"kty": "EC", "crv": "P-521"}, "ES512"),
    "OKP-Ed25519": ({"kty": "OKP", "crv": "Ed25519"}, "EdDSA"),
    "RSA-2048": ({"kty": "RSA", "size": 2048}, "RS256"),
    "RSA-3072": ({"kty": "RSA", "size": 3072}, "RS256"),
    "RSA-4096": ({"kty": "RSA", "size": 4096}, "RS256"),
}

#: X.509 template for a delegated OCSP responder certificate (RFC 6960 §4.2.2.2): OCSPSigning
#: EKU plus id-pkix-ocsp-nocheck (value: DER NULL). Use it as a provisioner's
#: ``options.x509.template``.
OCSP_RESPONDER_TEMPLATE: Final = (
    '{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, '
    '"keyUsage": ["digitalSignature"], "extKeyUsage": ["ocspSigning"], '
    '"extensions": [{"id": "1.3.6.1.5.5.7.48.1.5", "value": "BQA="}]}'
)

_TLS_CLAIMS: Final = ("minTLSCertDuration", "maxTLSCertDuration", "defaultTLSCertDuration")
_SSH_CLAIMS: Final = tuple(
    f"{bound}{kind}SSHCertDuration"
    for kind in ("User", "Host")
    for bound in ("min", "max", "default")
)
_CLAIM_DEFAULTS: Final = {
    "minTLSCertDuration": "5m",
    "maxTLSCertDuration": "24h",
    "defaultTLSCertDuration": "24h",
}


@attrs.frozen
class ProvisionerKey(_keyfile.ProvisionerKey):
    """The connector's provisioner key plus what a test needs to set the provisioner up.

    ``key``, ``kid`` and ``algorithm`` are the key exactly as the connector loads it (so a
    testing key mints tokens with the connector's own signer); ``name`` is the
    provisioner's, ``password`` encrypts the private key. ``encrypted_compact`` is what
    ``ca.json`` and ``GET /1.0/provisioners`` carry; ``encrypted_json`` is the
    JSON-serialized JWE that ``step crypto jwk create`` writes. Both hold the same
    encryption of :attr:`private_jwk_json`.
    """

    name: str
    password: str = attrs.field(repr=False)
    encrypted_compact: str = attrs.field(repr=False)
    encrypted_json: str = attrs.field(repr=False)

    @property
    def jws_alg(self) -> str:
        """The JWS algorithm of the provisioner's tokens (``ES256``, ``EdDSA``, ...)."""
        return self.algorithm

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public JWK, with ``kid``, ``alg`` and ``use``, as ``ca.json`` lists it."""
        public: dict[str, Any] = self.key.export_public(as_dict=True)
        return public

    @property
    def private_jwk_json(self) -> str:
        """The private JWK as JSON (the plaintext of the encrypted forms)."""
        return str(self.key.export_private())

    def signing_jwk(self) -> jwk.JWK:
        """Return the private key as a jwcrypto ``JWK`` (shared: do not mutate)."""
        return self.key

    def write_key_file(self, path: Path, *, form: Literal["json", "compact"] = "json") -> Path:
        """Write the encrypted private key to ``path`` (mode 0600) as-is, no trailing newline.

        Raises:
            ValueError: ``form`` is neither ``"json"`` nor ``"compact"``.
        """
        if form == "json":
            data = self.encrypted_json
        elif form == "compact":
            data = self.encrypted_compact
        else:
            raise ValueError(f"form must be 'json' or 'compact', not {form!r}")
        return write_private(path, data.encode())

    def write_password_file(self, path: Path, *, trailing_newline: bool = True) -> Path:
        """Write the password to ``path`` (mode 0600), by default with a trailing newline."""
        data = self.password + ("\n" if trailing_newline else "")
        return write_private(path, data.encode())


def mint_token(
    key: ProvisionerKey,
    *,
    audience: str,
    subject: str,
    sans: Sequence[str] = (),
    lifetime_seconds: int = 300,
) -> str:
    """A step-ca one-time token from ``key``'s provisioner, minted as the connector mints it.

    ``audience`` is e.g. ``https://localhost/1.0/sign`` or ``.../1.0/revoke``; ``sans`` is
    omitted from the claims when empty (step-ca then uses ``[subject]``).
    """
    return _token.mint_token(
        key,
        issuer=key.name,
        audience=audience,
        subject=subject,
        sans=sans,
        lifetime_seconds=lifetime_seconds,
    )


def make_provisioner_key(
    name: str,
    password: str,
    *,
    key_type: str = "EC-P256",
    p2c: int = 100_000,
    alg: str = "PBES2-HS256+A128KW",
    enc: str = "A256GCM",
) -> ProvisionerKey:
    """Generate a provisioner key pair and encrypt its private JWK with ``password``.

    ``kid`` is the RFC 7638 SHA-256 thumbprint (base64url); ``kid``, ``alg`` and ``use: sig``
    are set in both JWKs. The JWE protected header carries ``alg``, ``enc``,
    ``cty: jwk+json``, ``p2s`` and ``p2c``.

    Raises:
        ValueError: unknown ``key_type``, empty ``name`` or ``password``, or ``p2c`` out of range.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown key type {key_type!r}; expected one of {sorted(KEY_TYPES)}")
    if not name:
        raise ValueError("a provisioner needs a non-empty name")
    if not password:
        raise ValueError("a provisioner key needs a non-empty password")
    params, jws_alg = KEY_TYPES[key_type]
    generated = jwk.JWK.generate(**params)
    kid = generated.thumbprint(hashes.SHA256())
    private = jwk.JWK(**generated.export_private(as_dict=True), kid=kid, alg=jws_alg, use="sig")
    private_json: str = private.export_private()

    protected = {
        "alg": alg,
        "enc": enc,
        "cty": "jwk+json",
        "p2c": p2c,
        "p2s": base64url_encode(secrets.token_bytes(16)),
    }
    token = jwe.JWE(
        plaintext=private_json.encode(), protected=json.dumps(protected, separators=(",", ":"))
    )
    with allow_pbkdf2_iterations(p2c):
        token.add_recipient(jwk.JWK.from_password(password))
    compact: str = token.serialize(compact=True)
    flattened = json.loads(token.serialize())
    encrypted_json = json.dumps(
        {k: flattened[k] for k in ("protected", "encrypted_key", "iv", "ciphertext", "tag")},
        indent=2,
    )
    return ProvisionerKey(
        key=private,
        kid=kid,
        algorithm=jws_alg,
        name=name,
        password=password,
        encrypted_compact=compact,
        encrypted_json=encrypted_json,
    )


def provisioner_entry(
    key: ProvisionerKey,
    *,
    claims: Mapping[str, str] | None = None,
    x509_template: str | None = None,
) -> dict[str, Any]:
    """Return the ``authority.provisioners`` entry of a JWK provisioner for ``ca.json``.

    ``claims`` take step-ca's names (``minTLSCertDuration``, ``maxTLSCertDuration``,
    ``defaultTLSCertDuration``, and the SSH equivalents) with Go durations (``"5m"``,
    ``"24h"``). Unset TLS claims default to step-ca's 5m/24h/24h.

    Raises:
        ValueError: an unknown claim, a malformed duration, or a TLS default outside min..max
            (step-ca would refuse to start).
    """
    entry: dict[str, Any] = {
        "type": "JWK",
        "name": key.name,
        "key": dict(key.public_jwk),
        "encryptedKey": key.encrypted_compact,
    }
    if claims:
        entry["claims"] = _checked_claims(claims)
    if x509_template is not None:
        entry["options"] = {"x509": {"template": x509_template}}
    return entry


def acme_provisioner_entry(
    name: str = "acme",
    *,
    claims: Mapping[str, str] | None = None,
    require_eab: bool = False,
) -> dict[str, Any]:
    """Return the ``authority.provisioners`` entry of an ACME provisioner for ``ca.json``.

    Its directory is ``https://HOST:PORT/acme/<name>/directory``; the CA needs its
    database (``StepCA.create(db=True)``, the default) for ACME. ``require_eab`` makes
    accounts need External Account Binding (step-ca 0.19 OSS cannot create EAB keys).
    """
    entry: dict[str, Any] = {"type": "ACME", "name": name}
    if claims:
        entry["claims"] = _checked_claims(claims)
    if require_eab:
        entry["requireEAB"] = True
    return entry


def _checked_claims(claims: Mapping[str, str]) -> dict[str, str]:
    known = (*_TLS_CLAIMS, *_SSH_CLAIMS)
    unknown = sorted(set(claims) - set(known))
    if unknown:
        raise ValueError(f"unknown provisioner claims {unknown}; known: {list(known)}")
    seconds = {name: parse_go_duration(value) for name, value in claims.items()}
    effective = {
        name: seconds.get(name, parse_go_duration(default))
        for name, default in _CLAIM_DEFAULTS.items()
    }
    low, high, default = (effective[name] for name in _TLS_CLAIMS)
    if not low <= default <= high:
        raise ValueError(
            "defaultTLSCertDuration must lie between minTLSCertDuration and maxTLSCertDuration "
            f"(effective min={low}s default={default}s max={high}s, unset ones are 5m/24h/24h)"
        )
    return dict(claims)
