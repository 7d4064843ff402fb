"""What a rate-limit check costs per request: in memory, and shared in PostgreSQL.

    python -m bench.rate_limits [--database-url postgresql://…] [--requests 5000]

Prints latency of one check (sequential) and throughput with concurrent callers, for one
hot caller (every request on one row: the worst case for row locks) and many callers.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from api.security.ratelimit import Limiter, MemoryLimiter, PostgresLimiter, Rate
from bench.common import DEFAULT_PG, fresh_postgres, summary_ms
from commands.persistence import DatabaseConfig, prepare_database

RATE = Rate(limit=1_000_000_000, period=60)


async def sequential(limiter: Limiter, n: int) -> list[float]:
    samples = []
    for i in range(n):
        begin = time.perf_counter()
        await limiter.hit(f"default|apikey:{i % 100}", RATE)
        samples.append(time.perf_counter() - begin)
    return samples


async def concurrent(limiter: Limiter, n: int, callers: int, hot: bool) -> float:
    async def one(i: int) -> None:
        await limiter.hit("default|apikey:hot" if hot else f"default|apikey:{i}", RATE)

    begin = time.perf_counter()
    for start in range(0, n, callers):
        await asyncio.gather(*[one(i) for i in range(start, min(n, start + callers))])
    return n / (time.perf_counter() - begin)


async def measure(name: str, limiter: Limiter, n: int) -> None:
    await limiter.open()
    try:
        await sequential(limiter, 200)  # warm up
        print(f"{name:10} one check, sequential: {summary_ms(await sequential(limiter, n))}")
        for callers in (8, 32):
            for hot in (True, False):
                rate = await concurrent(limiter, n, callers, hot)
                who = "one caller " if hot else "many callers"
                print(f"{name:10} {callers:>2} concurrent, {who}: {rate:9,.0f} checks/s")
    finally:
        await limiter.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rate_limits")
    parser.add_argument("--database-url", default=DEFAULT_PG)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args(argv)
    asyncio.run(measure("memory", MemoryLimiter(), args.requests))
    with fresh_postgres(args.database_url, "ratelimit") as url:
        config = DatabaseConfig.from_url(url)
        prepare_database(config)
        asyncio.run(measure("postgresql", PostgresLimiter(config.conninfo()), args.requests))


if __name__ == "__main__":
    main()
