"""Revocation status for hosts: OCSP responses signed by a delegated responder, CRL checks.

What a host (the reference server) needs to publish revocation status for issuers,
including those whose CA has no OCSP responder of its own:

* :class:`OCSPResponder` answers RFC 6960 requests for one issuing CA from a status
  lookup, signing with a delegated responder certificate.
* :func:`build_ocsp_request`, :func:`parse_ocsp_request`, :func:`ocsp_error_response`
  for the request forms a host accepts.
* :func:`verify_crl` checks a CRL a CA published against the issuer chain.

Imports only the domain and ``cryptography``.
"""

from certctl_core.revocation import der
from certctl_core.revocation.crl import CRLInfo, verify_crl
from certctl_core.revocation.ocsp import (
    MAX_OCSP_REQUEST_BYTES,
    OCSPErrorStatus,
    OCSPQuery,
    OCSPResponder,
    OCSPSigner,
    build_ocsp_request,
    issuer_hashes,
    ocsp_error_response,
    parse_ocsp_request,
)
from certctl_core.revocation.signer import Signer, SigningKey, UnsupportedKeyError

__all__ = [
    "MAX_OCSP_REQUEST_BYTES",
    "CRLInfo",
    "OCSPResponder",
    "OCSPErrorStatus",
    "OCSPQuery",
    "OCSPSigner",
    "Signer",
    "SigningKey",
    "UnsupportedKeyError",
    "build_ocsp_request",
    "der",
    "issuer_hashes",
    "ocsp_error_response",
    "parse_ocsp_request",
    "verify_crl",
]
