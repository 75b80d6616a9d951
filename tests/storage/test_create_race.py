"""Two replicas (two stores on one database or data directory) creating the same new
issuer or profile at once: exactly one wins, the other gets RevisionConflictError; none
silently overwrites the other."""

from __future__ import annotations

import asyncio

import pytest

from certctl_host.storage import RevisionConflictError
from tests.storage.conftest import Backend
from tests.storage.test_sqlite_store import SECRET_FIELDS, record

pytestmark = pytest.mark.anyio

ROUNDS = 10


async def test_two_stores_creating_one_issuer_or_profile_at_once_one_wins(
    backend: Backend,
) -> None:
    a, b = await backend.open(), await backend.open()
    try:
        for i in range(ROUNDS):
            outcomes = await asyncio.gather(
                a.put_issuer(
                    record(f"new{i}", who="a"), secret_fields=SECRET_FIELDS, expected_revision=0
                ),
                b.put_issuer(
                    record(f"new{i}", who="b"), secret_fields=SECRET_FIELDS, expected_revision=0
                ),
                a.put_profile(f"p{i}", {"who": "a"}, expected_revision=0),
                b.put_profile(f"p{i}", {"who": "b"}, expected_revision=0),
                return_exceptions=True,
            )
            for pair in (outcomes[:2], outcomes[2:]):
                conflicts = [o for o in pair if isinstance(o, RevisionConflictError)]
                assert len(conflicts) == 1, pair
            winner = next(o for o in outcomes[:2] if not isinstance(o, BaseException))
            stored = await b.get_issuer(f"new{i}")
            assert stored is not None and stored.config["who"] == winner.config["who"]
            assert stored.revision == winner.revision
    finally:
        await a.aclose()
        await b.aclose()
