"""Limits at their boundaries: CSR size, SAN count, CA answer size (ADR 0017).

Below or at a limit works end to end against the real step-ca; one above is refused
locally with InvalidRequestError / InvalidResponseError, before any token is spent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certctl_core import CertificateRequest, InvalidRequestError, InvalidResponseError
from certctl_core.domain import MAX_CSR_BYTES, MAX_SANS
from certctl_localca import LocalCAIssuer, build_localca_issuer
from certctl_stepca.testing import Fault, Replacement
from tests.csr import make_csr, make_request
from tests.reliability.conftest import BuildIssuer, FaultyCA

pytestmark = [pytest.mark.anyio, pytest.mark.stepca]


def many_names(count: int) -> list[str]:
    return [f"host-{i}.limits.example.test" for i in range(count)]


async def test_max_sans_issue_at_the_real_ca_and_one_more_is_refused_locally(
    make_faulty_issuer: BuildIssuer, faulty: FaultyCA
) -> None:
    issuer = await make_faulty_issuer()
    at_limit = make_request(cn=None, dns=many_names(MAX_SANS))
    issued = await issuer.issue(at_limit)
    assert len(issued.sans) == MAX_SANS
    signs_before = len(faulty.proxy.jtis("/1.0/sign"))
    with pytest.raises(InvalidRequestError, match=f"more than the {MAX_SANS} accepted"):
        await issuer.issue(make_request(cn=None, dns=many_names(MAX_SANS + 1)))
    assert len(faulty.proxy.jtis("/1.0/sign")) == signs_before  # no token spent


async def test_local_ca_refuses_one_san_over_the_limit(tmp_path: Path) -> None:
    ca = await build_localca_issuer(
        "limits", {"state_dir": str(tmp_path / "s"), "key_password": "x" * 12}
    )
    assert isinstance(ca, LocalCAIssuer)
    try:
        with pytest.raises(InvalidRequestError, match=f"more than the {MAX_SANS} accepted"):
            await ca.issue(make_request(cn=None, dns=many_names(MAX_SANS + 1)))
    finally:
        await ca.close()


def test_a_csr_of_exactly_the_size_limit_parses_and_one_byte_more_does_not() -> None:
    pem = make_csr().public_bytes(serialization.Encoding.PEM)
    padded = pem + b"\n" * (MAX_CSR_BYTES - len(pem))  # trailing white space is allowed
    assert len(padded) == MAX_CSR_BYTES
    assert CertificateRequest.from_pem(padded).common_name == "app.example.test"
    with pytest.raises(InvalidRequestError, match=f"more than the {MAX_CSR_BYTES} bytes"):
        CertificateRequest.from_pem(padded + b"\n")


async def test_ca_answers_up_to_max_response_bytes_are_read_and_larger_ones_refused(
    make_faulty_issuer: BuildIssuer, faulty: FaultyCA
) -> None:
    limit = 16 * 1024  # the smallest limit the config accepts
    issuer = await make_faulty_issuer(max_response_bytes=limit)
    assert (await issuer.issue(make_request())).serial > 0  # a real answer is ~3 KiB
    body = b'{"status": 400, "message": "' + b"x" * (limit - 30) + b'"}'
    exact = Replacement(400, chunk=body.ljust(limit, b" "))
    faulty.proxy.inject(Fault.REPLACE, path="/1.0/sign", times=1, replacement=exact)
    with pytest.raises(InvalidRequestError, match="malformed"):  # read whole, then judged
        await issuer.issue(make_request())
    over = Replacement(400, chunk=body.ljust(limit + 1, b" "))
    faulty.proxy.inject(Fault.REPLACE, path="/1.0/sign", times=1, replacement=over)
    with pytest.raises(InvalidResponseError, match=f"exceeds {limit} bytes"):
        await issuer.issue(make_request())
