"""Hostile input, property-based: every parser answers a value or a typed certctl error.

The CI-sized run uses ``CERTCTL_HYPOTHESIS_EXAMPLES`` examples per property (default
200); a longer run sets it higher (docs/reliability.md has the figures). No deadline:
these tests assert outcomes, never speed. Bounded memory is checked separately, with
tracemalloc, on inputs far above every limit.
"""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certctl_core import (
    CertificateRequest,
    ConfigError,
    InvalidRequestError,
    Secret,
    parse_serial,
)
from certctl_core.domain import MAX_CSR_BYTES, MAX_SERIAL, format_serial_hex
from certctl_core.revocation.ocsp import (
    MAX_OCSP_REQUEST_BYTES,
    issuer_hashes,
)
from certctl_core.revocation.ocsp import parse_ocsp_request as parse_request
from certctl_localca import LocalCAIssuer, build_localca_issuer
from certctl_localca._config import LocalCAConfig
from certctl_stepca._http import load_root
from certctl_stepca._keyfile import load_provisioner_key
from certctl_stepca.config import KEYS as STEPCA_KEYS
from certctl_stepca.config import StepCAConfig
from certctl_stepca.testing import make_provisioner_key
from tests.reliability.hostile import (
    check_csr,
    check_key_file,
    check_localca_config,
    check_ocsp_request,
    check_reason,
    check_serial,
    check_stepca_config,
    seed_csr_der,
    seed_ocsp_request,
)

EXAMPLES = int(os.environ.get("CERTCTL_HYPOTHESIS_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

CSR_SEED = seed_csr_der()
OCSP_SEED = seed_ocsp_request()
KEY = make_provisioner_key("fuzz", "hostile", p2c=1000)


# -- strategies ---------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes flipped, cut, duplicated or inserted."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup", "set"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 128))]
        elif data:
            data[at] = draw(st.sampled_from([0x00, 0x30, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
    return bytes(data)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def hostile_key_files(draw: st.DrawFn) -> bytes:
    """Real key files, mutated at the byte level or with a hostile JWE header."""
    genuine = KEY.encrypted_json.encode()
    kind = draw(st.sampled_from(["bytes", "mutated", "header", "fields", "compact"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "mutated":
        return draw(mutated(genuine))
    doc = json.loads(genuine)
    if kind == "header":
        header = {
            "alg": draw(
                st.sampled_from(["PBES2-HS256+A128KW", "dir", "none", "RSA1_5"]) | st.text()
            ),
            "enc": draw(st.sampled_from(["A256GCM", "A128CBC-HS256", "x"]) | json_scalars),
            "p2c": draw(st.integers(-3, 4000) | json_scalars | st.just(10**12)),
            "p2s": draw(st.text(max_size=30) | json_scalars),
            "cty": draw(st.just("jwk+json") | json_scalars),
        }
        doc["protected"] = _b64url(json.dumps(header).encode())
        return json.dumps(doc).encode()
    if kind == "fields":
        doc[draw(st.sampled_from(sorted(doc)))] = draw(json_values)
        return json.dumps(doc).encode()
    parts = [doc["protected"], doc["encrypted_key"], doc["iv"], doc["ciphertext"], doc["tag"]]
    parts[draw(st.integers(0, 4))] = draw(st.text(max_size=40))
    return ".".join(parts).encode()


@pytest.fixture
async def localca(tmp_path: Path) -> AsyncIterator[LocalCAIssuer]:
    issuer = await build_localca_issuer(
        "fuzz-ca", {"state_dir": str(tmp_path / "state"), "key_password": "x" * 12}
    )
    assert isinstance(issuer, LocalCAIssuer)
    yield issuer
    await issuer.close()


# -- properties ---------------------------------------------------------------------------


@FUZZ
@given(raw=st.dictionaries(st.text(max_size=30), json_values, max_size=8))
def test_stepca_config_of_anything_is_a_config_or_a_config_error(raw: dict[str, Any]) -> None:
    check_stepca_config(raw)


@FUZZ
@given(
    field=st.sampled_from(sorted(STEPCA_KEYS)),
    value=json_values | st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
)
def test_stepca_config_with_one_hostile_field_is_typed(
    field: str, value: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.getbasetemp() / "fuzz-config"
    base.mkdir(exist_ok=True)
    key_file = KEY.write_key_file(base / "key.json")
    root = base / "root.pem"
    root.write_text("not checked here")
    raw = {
        "ca_url": "https://127.0.0.1:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(key_file),
        "provisioner_password": "hostile",
        "root_cert_path": str(root),
        field: value,
    }
    check_stepca_config(raw)


@FUZZ
@given(raw=st.dictionaries(st.text(max_size=30), json_values, max_size=8))
def test_localca_config_of_anything_is_a_config_or_a_config_error(raw: dict[str, Any]) -> None:
    check_localca_config(raw)


@FUZZ
@given(data=hostile_key_files())
def test_provisioner_key_file_of_anything_is_a_key_or_a_config_error(data: bytes) -> None:
    check_key_file(data)


@FUZZ
@given(data=st.binary(max_size=2048) | mutated(CSR_SEED))
def test_csr_of_anything_is_a_request_or_an_invalid_request(data: bytes) -> None:
    check_csr(data)


@FUZZ
@given(data=mutated(CSR_SEED))
def test_pem_csr_of_anything_is_a_request_or_an_invalid_request(data: bytes) -> None:
    body = base64.encodebytes(data).decode()
    check_csr(
        f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n".encode()
    )


@FUZZ
@given(data=st.binary(max_size=1024) | mutated(OCSP_SEED))
def test_ocsp_request_of_anything_is_a_query_or_an_invalid_request(data: bytes) -> None:
    check_ocsp_request(data)


@FUZZ
@given(
    text=st.text(max_size=200)
    | st.integers()
    | st.from_regex(r"\A\s*(0x)?[0-9a-fA-F:]{0,90}\s*\Z")
    | st.integers(min_value=-(2**200), max_value=2**200).map(str)
)
def test_serial_of_anything_is_a_serial_or_an_invalid_request(text: str | int) -> None:
    check_serial(text)


@FUZZ
@given(serial=st.integers(min_value=1, max_value=MAX_SERIAL))
def test_every_valid_serial_round_trips_in_all_spellings(serial: int) -> None:
    hex_digits = format_serial_hex(serial)
    colons = ":".join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))
    assert parse_serial(str(serial)) == serial
    assert parse_serial(f"0x{hex_digits}") == serial
    if len(hex_digits) > 2:  # one octet has no colon to tell hex from decimal
        assert parse_serial(colons.upper()) == serial


@FUZZ
@given(value=st.text(max_size=40) | st.integers())
def test_revocation_reason_of_anything_is_a_reason_or_an_invalid_request(
    value: str | int,
) -> None:
    check_reason(value)


@pytest.mark.anyio
@FUZZ
@given(data=mutated(OCSP_SEED) | st.binary(max_size=256))
async def test_local_ca_answers_hostile_ocsp_requests_or_refuses_them_typed(
    data: bytes, localca: LocalCAIssuer
) -> None:
    try:
        answer = await localca.ocsp(data)
    except InvalidRequestError:
        return
    parsed = ocsp.load_der_ocsp_response(answer)  # whatever it answers is a valid response
    assert parsed.response_status in (
        ocsp.OCSPResponseStatus.SUCCESSFUL,
        ocsp.OCSPResponseStatus.UNAUTHORIZED,
    )


def _request_for(issuer: x509.Certificate, serial: int, nonce: bytes | None) -> bytes:
    name_hash, key_hash = issuer_hashes(issuer)["sha256"]
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, serial, hashes.SHA256()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.mark.anyio
@FUZZ
@given(
    serial=st.integers(min_value=0, max_value=2**200),  # the builder refuses negatives
    nonce=st.none() | st.binary(min_size=1, max_size=64),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4),
)
async def test_local_ca_answers_any_serial_for_itself_or_refuses_typed(
    serial: int, nonce: bytes | None, flips: list[tuple[int, int]], localca: LocalCAIssuer
) -> None:
    issuing = (await localca.ca_chain())[0]
    request = bytearray(_request_for(issuing, serial, nonce))
    for at, xor in flips:
        request[at % len(request)] ^= xor
    try:
        answer = await localca.ocsp(bytes(request))
    except InvalidRequestError:
        return
    parsed = ocsp.load_der_ocsp_response(answer)
    if parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL and not flips:
        assert parsed.serial_number == serial
        assert parsed.certificate_status is ocsp.OCSPCertStatus.UNKNOWN  # never issued


# -- limits and bounded memory ---------------------------------------------------------------


def _peak(action: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"tracemalloc peak {peak} bytes")  # figures for docs/reliability.md (pytest -s)
    return peak


def test_a_csr_over_the_size_limit_is_refused_before_parsing() -> None:
    huge = b"0" * (MAX_CSR_BYTES + 1)
    with pytest.raises(InvalidRequestError, match=f"more than the {MAX_CSR_BYTES} bytes"):
        CertificateRequest.from_der(huge)
    giant = b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"A" * (64 << 20)

    def refuse() -> None:
        with pytest.raises(InvalidRequestError):
            CertificateRequest.from_pem(giant)

    assert _peak(refuse) < 1 << 20  # nothing proportional to the 64 MiB input


def test_an_ocsp_request_over_the_size_limit_is_refused_before_parsing() -> None:
    giant = b"\x30\x84\x04\x00\x00\x00" + bytes(64 << 20)

    def refuse() -> None:
        with pytest.raises(InvalidRequestError, match=f"{MAX_OCSP_REQUEST_BYTES}"):
            parse_request(giant)

    assert _peak(refuse) < 1 << 20


def test_a_huge_key_file_is_refused_reading_only_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(256 << 20)  # sparse: 256 MiB without writing them

    def refuse() -> None:
        with pytest.raises(ConfigError, match="too large for a provisioner key"):
            load_provisioner_key(path, Secret("x"))

    assert _peak(refuse) < 2 << 20


def test_a_huge_password_file_is_refused_reading_only_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "password"
    with path.open("wb") as handle:
        handle.truncate(256 << 20)
    key_file = KEY.write_key_file(tmp_path / "key.json")
    raw = {
        "ca_url": "https://127.0.0.1:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(key_file),
        "provisioner_password_file": str(path),
        "root_fingerprint": "ab" * 32,
    }

    def refuse() -> None:
        with pytest.raises(
            ConfigError, match=r"provisioner_password_file: .* is too large for a secret"
        ):
            StepCAConfig.from_mapping(raw, env={})

    assert _peak(refuse) < 1 << 20


def test_a_key_file_asking_for_a_billion_pbkdf2_iterations_is_refused_without_trying(
    tmp_path: Path,
) -> None:
    doc = json.loads(KEY.encrypted_json)
    padded = doc["protected"] + "=" * (-len(doc["protected"]) % 4)
    header = json.loads(base64.urlsafe_b64decode(padded))
    header["p2c"] = 10**9
    doc["protected"] = _b64url(json.dumps(header).encode())
    path = tmp_path / "key.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="1000000000 PBKDF2 iterations"):
        load_provisioner_key(path, Secret("hostile"))


# -- regressions: what the fuzzers found ------------------------------------------------------


def test_a_csr_claiming_another_pkcs10_version_is_an_invalid_request() -> None:
    # hypothesis: x509.InvalidVersion is not a ValueError and escaped from from_der.
    data = bytearray(CSR_SEED)
    version_at = CSR_SEED.index(b"\x02\x01\x00")  # CertificationRequestInfo.version = 0
    data[version_at + 2] = 1
    with pytest.raises(InvalidRequestError, match="could not be parsed"):
        CertificateRequest.from_der(bytes(data))


def test_a_password_file_path_with_a_nul_byte_is_a_config_error(tmp_path: Path) -> None:
    # atheris: open() raises ValueError, not OSError, for an embedded NUL.
    raw = {
        "ca_url": "https://127.0.0.1:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(KEY.write_key_file(tmp_path / "key.json")),
        "provisioner_password_file": "/etc/pass\x00wd",
        "root_fingerprint": "ab" * 32,
    }
    with pytest.raises(ConfigError, match=r"provisioner_password_file: .* is not a usable path"):
        StepCAConfig.from_mapping(raw, env={})


@pytest.mark.parametrize("path", ["~no-such-user-certctl/state", "/tmp/st\x00ate"])
def test_localca_paths_that_cannot_exist_are_config_errors(path: str) -> None:
    # atheris: Path.expanduser raised RuntimeError for an unknown ~user.
    with pytest.raises(ConfigError, match=r"state_dir: .* is not a usable path"):
        LocalCAConfig.from_mapping({"state_dir": path, "key_password": "x"}, env={})
    with pytest.raises(ConfigError, match="key_password_file"):
        LocalCAConfig.from_mapping({"state_dir": "/tmp/x", "key_password_file": path}, env={})


def test_localca_password_file_that_never_ends_is_refused_with_bounded_memory() -> None:
    # found reading the code for the fuzz targets: read_text() had no bound. Since issue 15
    # a device is refused before any read (not a regular file).
    def refuse() -> None:
        with pytest.raises(ConfigError, match=r"key_password_file: .* is not a regular file"):
            LocalCAConfig.from_mapping(
                {"state_dir": "/tmp/x", "key_password_file": "/dev/zero"}, env={}
            )

    assert _peak(refuse) < 1 << 20


def test_a_root_file_far_larger_than_a_certificate_is_refused_reading_only_its_limit(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root.pem"
    with root.open("wb") as handle:
        handle.truncate(256 << 20)
    raw = {
        "ca_url": "https://127.0.0.1:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(KEY.write_key_file(tmp_path / "key.json")),
        "provisioner_password": "hostile",
        "root_cert_path": str(root),
    }
    config = StepCAConfig.from_mapping(raw, env={})

    def refuse() -> None:
        with pytest.raises(ConfigError, match="larger than a root certificate"):
            load_root(config)

    assert _peak(refuse) < 2 << 20


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:90[0",  # atheris: urlsplit raised ValueError
        "https://127.0.0.1:99999",  # httpx raised an ExceptionGroup at connect time
        "https://ca.internal:+1",
        "https://ca.internal:0",
        "https://ca inter.nal:9000",
        "https://ca.internal\x00:9000",  # httpx.InvalidURL when the client is built
    ],
)
def test_ca_urls_that_cannot_be_dialled_are_config_errors(url: str, tmp_path: Path) -> None:
    raw = {
        "ca_url": url,
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(KEY.write_key_file(tmp_path / "key.json")),
        "provisioner_password": "hostile",
        "root_fingerprint": "ab" * 32,
    }
    with pytest.raises(ConfigError) as caught:
        StepCAConfig.from_mapping(raw, env={})
    assert [p.field for p in caught.value.problems] == ["ca_url"]


def test_a_ca_url_with_a_password_in_it_is_refused_without_repeating_it(tmp_path: Path) -> None:
    raw = {
        "ca_url": "https://certctl:hunter2-secret@ca.internal:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(KEY.write_key_file(tmp_path / "key.json")),
        "provisioner_password": "hostile",
        "root_fingerprint": "ab" * 32,
    }
    with pytest.raises(ConfigError, match="user info") as caught:
        StepCAConfig.from_mapping(raw, env={})
    assert "hunter2" not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("field", ["max_retries", "token_lifetime_seconds", "max_connections"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "1e999", 10**400])
def test_non_finite_or_huge_numbers_are_config_errors(
    field: str, value: object, tmp_path: Path
) -> None:
    # atheris: int(float("inf")) raised OverflowError out of StepCAConfig.from_mapping.
    raw = {
        "ca_url": "https://127.0.0.1:9000",
        "provisioner_name": "fuzz",
        "provisioner_key_path": str(KEY.write_key_file(tmp_path / "key.json")),
        "provisioner_password": "hostile",
        "root_fingerprint": "ab" * 32,
        field: value,
    }
    with pytest.raises(ConfigError) as caught:
        StepCAConfig.from_mapping(raw, env={})
    assert [p.field for p in caught.value.problems] == [field]


@pytest.mark.parametrize("field", ["validity_days", "crl_validity_hours", "ocsp_validity_hours"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, 10**400])
def test_localca_non_finite_or_huge_durations_are_config_errors(field: str, value: object) -> None:
    # found after the step-ca one: timedelta(days=inf) raised OverflowError.
    raw = {"state_dir": "/tmp/x", "key_password": "x", field: value}
    with pytest.raises(ConfigError) as caught:
        LocalCAConfig.from_mapping(raw, env={})
    assert [p.field for p in caught.value.problems] == [field]
