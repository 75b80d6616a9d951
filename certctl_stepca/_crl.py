"""step-ca's CRL (``GET /1.0/crl``, step-ca v0.23 and later with ``crl.enabled``).

The CRL is fetched, verified against the issuer chain and kept until it is
``CACHE_SECONDS`` old or its nextUpdate passes, whichever comes first; concurrent callers
share one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cryptography import x509

from certctl_core import CertctlError, UnsupportedCapabilityError
from certctl_core.revocation import CRLInfo, verify_crl
from certctl_stepca._http import CAClient, CAResponse

__all__ = ["CACHE_SECONDS", "CRLCache"]

#: A published CRL is re-fetched after this long: step-ca regenerates it on revocation.
CACHE_SECONDS = 60.0


class CRLCache:
    """The last verified CRL of one step-ca."""

    def __init__(
        self,
        client: CAClient,
        chain: Callable[[], Awaitable[tuple[x509.Certificate, ...]]],
        status_error: Callable[[CAResponse, str], CertctlError],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._chain = chain
        self._status_error = status_error
        self._clock = clock
        self._info: CRLInfo | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> bytes:
        if self._info is not None and self._clock() < self._expires:
            return self._info.der
        async with self._lock:
            now = self._clock()
            if self._info is not None and now < self._expires:
                return self._info.der
            response = await self._client.request("GET", "/1.0/crl")
            if response.status == 404:
                raise UnsupportedCapabilityError(
                    "crl",
                    hint="step-ca answered 404 for /1.0/crl: it publishes CRLs only from v0.23 "
                    "with authority.crl.enabled in ca.json; enable that or set crl_enabled: false",
                )
            if response.status != 200:
                raise self._status_error(response, "crl")
            info = verify_crl(response.body, await self._chain())
            self._info = info
            self._expires = min(now + CACHE_SECONDS, info.next_update.timestamp())
            return info.der
