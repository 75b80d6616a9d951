"""The tls-alpn-01 listener alone, with real TLS handshakes on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import pytest
from cryptography import x509

from certctl_acme._challenges import ACME_TLS_ALPN, TlsAlpnResponder

pytestmark = [pytest.mark.anyio]
_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


async def _presented_digest(port: int, name: str) -> bytes:
    """What a validator sees: the acmeIdentifier of the certificate for ``name``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([ACME_TLS_ALPN])
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=name
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    cert = x509.load_der_x509_certificate(der)
    value = cert.extensions.get_extension_for_oid(_ACME_IDENTIFIER).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value[2:]


async def test_two_orders_for_one_name_keep_their_own_validation_certificate() -> None:
    responder = TlsAlpnResponder.for_address("127.0.0.1", 0)
    first = await responder.present("same.example.test", "token-one.thumb")
    second = await responder.present("same.example.test", "token-two.thumb")
    assert responder._server is not None
    port = responder._server.sockets[0].getsockname()[1]
    assert (
        await _presented_digest(port, "same.example.test")
        == hashlib.sha256(b"token-two.thumb").digest()
    )
    await first()  # the first order is done: the second's certificate stays
    assert (
        await _presented_digest(port, "same.example.test")
        == hashlib.sha256(b"token-two.thumb").digest()
    )
    await second()
    assert not responder.contexts and responder._server is None
