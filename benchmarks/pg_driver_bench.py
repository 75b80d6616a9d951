"""The PostgreSQL driver's round-trip cost (ADR 0023): ``python -m benchmarks.pg_driver_bench``.

Starts a PostgreSQL cluster and times, on loopback, the statement a ledger status lookup
sends (a primary-key read), sequentially and with 16 concurrent callers, through:

* the baseline, a bare ``SELECT 1`` on one psycopg connection (the network and server floor);
* psycopg 3 (async, autocommit, the pool the store uses): what the store pays;
* asyncpg (pool), when it is installed (it is not a dependency: the comparison that
  chose the driver).

Prints microseconds per statement and ratios against psycopg.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from benchmarks._common import render_table
from tests.postgres import cluster

SETUP = (
    "CREATE TABLE certificates (issuer_id TEXT, serial TEXT, revoked_at TIMESTAMPTZ, "
    "PRIMARY KEY (issuer_id, serial))",
    "INSERT INTO certificates SELECT 'corp', to_hex(g), NULL FROM generate_series(1, 10000) g",
)
QUERY = "SELECT serial, revoked_at FROM certificates WHERE issuer_id = %s AND serial = %s"


async def timed(call: Callable[[int], Awaitable[object]], count: int, workers: int) -> float:
    """Microseconds per call, ``workers`` callers at once."""
    for i in range(50):
        await call(i)

    async def worker(offset: int) -> None:
        for i in range(offset, count, workers):
            await call(i)

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return (time.perf_counter() - began) / count * 1e6


async def run(url: str, count: int) -> dict[str, dict[int, float]]:
    results: dict[str, dict[int, float]] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in SETUP:
            await conn.execute(statement)
        lock = asyncio.Lock()

        async def floor(i: int) -> object:
            async with lock:
                return await (await conn.execute("SELECT 1")).fetchone()

        results["baseline SELECT 1, one connection"] = {1: await timed(floor, count, 1)}
    async with AsyncConnectionPool(
        url, min_size=8, max_size=8, kwargs={"autocommit": True}
    ) as pool:

        async def pg(i: int) -> object:
            async with pool.connection() as c:
                return await (await c.execute(QUERY, ("corp", f"{i % 10000 + 1:x}"))).fetchone()

        results["psycopg 3 pool (the store)"] = {w: await timed(pg, count, w) for w in (1, 16)}
    if importlib.util.find_spec("asyncpg") is not None:
        import asyncpg  # type: ignore[import-not-found,import-untyped,unused-ignore]

        apool = await asyncpg.create_pool(url, min_size=8, max_size=8)
        try:
            query = QUERY.replace("%s", "$1", 1).replace("%s", "$2", 1)

            async def apg(i: int) -> object:
                async with apool.acquire() as c:
                    return await c.fetchrow(query, "corp", f"{i % 10000 + 1:x}")

            results["asyncpg pool"] = {w: await timed(apg, count, w) for w in (1, 16)}
        finally:
            await apool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    with cluster() as postgres:
        url = postgres.new_database().split("?")[0]
        results = asyncio.run(run(url, args.count))
    ours = results["psycopg 3 pool (the store)"]
    rows = [
        [
            name,
            f"{by[1]:.0f}",
            f"{by[16]:.0f}" if 16 in by else "-",
            f"{by[1] / ours[1]:.2f}",
            f"{by[16] / ours[16]:.2f}" if 16 in by else "-",
        ]
        for name, by in results.items()
    ]
    print(
        render_table(
            "Primary-key read on loopback, µs per statement",
            ["driver", "1 caller", "16 callers", "/ psycopg (1)", "/ psycopg (16)"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
