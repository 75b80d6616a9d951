"""Loading the JWK provisioner key: once per connector build, never per request.

The key file is the private JWK encrypted as a JWE with PBES2 key wrapping, in either
serialization (``step crypto jwk create`` writes the JSON form, ``ca.json`` carries the
compact one). Every way a user gets this wrong has its own message: a base64-wrapped
file, a plain public key, an unsupported algorithm, a hostile iteration count, a wrong
password (often a trailing newline). Nothing here logs or repeats the password or key.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from jwcrypto import jwa, jwe, jwk
from jwcrypto.common import JWException

from certctl_core import ConfigError, ConfigProblem, Secret
from certctl_core.files import FileTooLargeError, read_regular_file

__all__ = [
    "MAX_PBKDF2_ITERATIONS",
    "ProvisionerKey",
    "allow_pbkdf2_iterations",
    "jws_algorithm",
    "load_provisioner_key",
]

#: Above this a key file costs seconds to decrypt: refuse it as hostile (step tools write
#: 100,000 or 600,000).
MAX_PBKDF2_ITERATIONS = 1_200_000
_MAX_KEY_FILE = 256 * 1024
_KEY_ALGS = ("PBES2-HS256+A128KW", "PBES2-HS384+A192KW", "PBES2-HS512+A256KW")
_ENC_ALGS = ("A128GCM", "A192GCM", "A256GCM")
_CURVE_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "Ed25519": "EdDSA"}

_FIELD = "provisioner_key_path"


@attrs.frozen
class ProvisionerKey:
    """The decrypted provisioner key (masked in ``repr``) and how to sign with it."""

    key: jwk.JWK = attrs.field(repr=False)
    kid: str
    algorithm: str

    def public_thumbprint(self) -> str:
        return str(self.key.thumbprint())


def jws_algorithm(key: jwk.JWK) -> str | None:
    """The JWS algorithm step-ca uses for a key (None when unsupported)."""
    kty = key.get("kty")
    if kty == "RSA":
        alg = key.get("alg")
        return alg if alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512") else "RS256"
    if kty in ("EC", "OKP"):
        return _CURVE_ALGS.get(str(key.get("crv")))
    return None


# jwcrypto reads its PBKDF2 limit from a module global (no per-call setting as of 1.6) and
# checks it inside every PBES2 wrap and unwrap. Every block that needs more iterations holds
# a grant; the global is the largest grant while any is held and the value found before the
# first grant once the last is released. One lock for the whole process: two independent
# save-and-restore blocks interleaved would lower the limit under a running decrypt (which
# then fails like a wrong password) or leave it raised for good.
class _Grants:
    """The PBKDF2 rounds granted by the blocks now open, and the limit found before them."""

    lock = threading.Lock()
    held: list[int] = []  # noqa: RUF012 - one process-wide book, only touched under lock
    before = 0


@contextmanager
def allow_pbkdf2_iterations(iterations: int) -> Iterator[None]:
    """Let jwcrypto use PBES2 with up to ``iterations`` PBKDF2 rounds inside the block.

    Safe to nest and to use from several threads at once. jwcrypto refuses more than 16,384
    rounds by default; step keys use 100,000 or more.

    Raises:
        ValueError: ``iterations`` is not in 1..:data:`MAX_PBKDF2_ITERATIONS`.
    """
    if isinstance(iterations, bool) or not 0 < iterations <= MAX_PBKDF2_ITERATIONS:
        raise ValueError(f"PBKDF2 iterations must be in 1..{MAX_PBKDF2_ITERATIONS}")
    with _Grants.lock:
        if not _Grants.held:
            _Grants.before = jwa.default_max_pbkdf2_iterations
        _Grants.held.append(iterations)
        jwa.default_max_pbkdf2_iterations = max(_Grants.before, *_Grants.held)
    try:
        yield
    finally:
        with _Grants.lock:
            _Grants.held.remove(iterations)
            jwa.default_max_pbkdf2_iterations = max([_Grants.before, *_Grants.held])


def _problem(message: str, hint: str | None = None) -> ConfigError:
    return ConfigError([ConfigProblem(_FIELD, message, hint)])


def _parse_container(raw: str) -> tuple[dict[str, Any], str]:
    """The JWE's protected header and the text to hand jwcrypto; raises ConfigError."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise _problem("the key file is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _problem("the key file is JSON but not a JWE object")
        if "kty" in doc:
            if "d" in doc:
                raise _problem(
                    "the key file holds an unencrypted private key",
                    "store it encrypted ('step crypto jwe encrypt' or 'step crypto jwk "
                    "create'); certctl refuses to read plaintext provisioner keys",
                )
            raise _problem(
                "the key file holds a public key only",
                "use the provisioner's private key file (the encrypted one), not the "
                "public key from ca.json's 'key' field",
            )
        protected = doc.get("protected")
        if not isinstance(protected, str) or "ciphertext" not in doc:
            raise _problem(
                "the key file is JSON but not a JWE (no 'protected'/'ciphertext')",
                "expected the encrypted JWK that 'step crypto jwk create' writes",
            )
        return _decode_header(protected), text
    parts = text.split(".")
    if len(parts) == 5:
        return _decode_header(parts[0]), text
    try:
        unwrapped = base64.b64decode(text, validate=False).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        unwrapped = ""
    if unwrapped.startswith("{") or unwrapped.count(".") == 4:
        raise _problem(
            "the key file is base64-wrapped",
            "decode it first (base64 -d key.b64 > provisioner.json) and point "
            "provisioner_key_path at the result",
        )
    raise _problem(
        "the key file is neither a JSON nor a compact JWE",
        "expected the encrypted provisioner JWK: JSON with 'protected', 'encrypted_key', "
        "'iv', 'ciphertext', 'tag', or the five-part compact form from ca.json's "
        "'encryptedKey'",
    )


def _decode_header(segment: str) -> dict[str, Any]:
    try:
        padded = segment + "=" * (-len(segment) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        raise _problem("the JWE's protected header is not valid base64url JSON") from None
    if not isinstance(header, dict):
        raise _problem("the JWE's protected header is not a JSON object")
    return header


def _check_header(header: dict[str, Any]) -> int:
    alg, enc, p2c = header.get("alg"), header.get("enc"), header.get("p2c")
    if alg not in _KEY_ALGS:
        raise _problem(
            f"unsupported key wrapping algorithm {alg!r}",
            f"step-ca provisioner keys use one of {', '.join(_KEY_ALGS)}",
        )
    if enc not in _ENC_ALGS:
        raise _problem(
            f"unsupported content encryption {enc!r}",
            f"supported: {', '.join(_ENC_ALGS)}",
        )
    if isinstance(p2c, bool) or not isinstance(p2c, int) or p2c < 1:
        raise _problem("the JWE's 'p2c' (PBKDF2 iterations) is missing or not a positive integer")
    if p2c > MAX_PBKDF2_ITERATIONS:
        raise _problem(
            f"the key file asks for {p2c} PBKDF2 iterations, more than the "
            f"{MAX_PBKDF2_ITERATIONS} accepted",
            "re-encrypt the key with the usual 100000 or 600000 iterations",
        )
    return p2c


def load_provisioner_key(path: Path, password: Secret) -> ProvisionerKey:
    """Read, decrypt and check the provisioner key at ``path``.

    Raises ConfigError (field ``provisioner_key_path`` or ``provisioner_password``) with
    a message that tells the user what to change.
    """
    try:
        data = read_regular_file(path, _MAX_KEY_FILE)
    except FileTooLargeError:
        raise _problem(f"{path} is too large for a provisioner key") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "the path contains a NUL byte"
        raise _problem(f"cannot read {path}: {reason}") from None
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _problem(f"{path} is not text", "expected the encrypted JWK (JSON)") from None
    header, container = _parse_container(raw)
    iterations = _check_header(header)

    token = jwe.JWE()
    token.allowed_algs = [*_KEY_ALGS, *_ENC_ALGS]
    secret = jwk.JWK.from_password(password.reveal())
    try:
        with allow_pbkdf2_iterations(iterations):
            token.deserialize(container, key=secret)
    except (JWException, ValueError, TypeError, KeyError):
        hint = "check the password"
        if password.reveal() != password.reveal().strip():
            hint = (
                "the password starts or ends with white space (often a trailing newline "
                "from 'echo'); remove it"
            )
        raise ConfigError(
            [
                ConfigProblem(
                    "provisioner_password",
                    f"cannot decrypt {path.name}: wrong password or corrupted key file",
                    hint,
                )
            ]
        ) from None
    try:
        key = jwk.JWK.from_json(token.payload)
    except (JWException, ValueError, TypeError):
        raise _problem("the decrypted key file does not hold a JWK") from None
    if not key.has_private:
        raise _problem("the decrypted JWK has no private part")
    algorithm = jws_algorithm(key)
    if algorithm is None:
        raise _problem(
            f"unsupported key type {key.get('kty')}/{key.get('crv')}",
            "step-ca JWK provisioners use EC P-256/P-384/P-521, Ed25519 or RSA keys",
        )
    kid = key.get("kid") or key.thumbprint()
    return ProvisionerKey(key=key, kid=str(kid), algorithm=algorithm)
