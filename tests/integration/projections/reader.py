"""R12's reader: about 50 reads/s through the stable view, in its own process."""

import asyncio
import multiprocessing
import random
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.database.engine import create_engine
from metachat.tenants.queries import get_tenant_directory_entry, list_tenants
from tests.integration.projections.support import Row


class Reader:
    """~50 reads/s through the view: counts, a known tenant's content, and a page of the list.

    It runs in its own process (spawned, with its own engine), so that the rebuild's CPU work
    in the test's process does not throttle the read rate; `counts` are shared with the test.
    """

    def __init__(self, url: str, baseline: dict[uuid.UUID, Row]) -> None:
        self.url = url
        self.baseline = baseline
        self.ids = list(baseline)
        # The baseline tenants do not change during the test; tenants created meanwhile are newer.
        self.cutoff = max(row[1] for row in baseline.values())
        self.keys = sum(row[3] for row in baseline.values())
        self.reads = 0
        self.errors: list[str] = []
        self.bad: list[str] = []
        self.last_count = 0

    async def one(self, engine: AsyncEngine, rng: random.Random) -> None:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) AS n, count(*) FILTER (WHERE created_at <= :cutoff) AS known, "
                        "sum(active_keys) FILTER (WHERE created_at <= :cutoff) AS keys FROM tenants.tenant_directory"
                    ),
                    {"cutoff": self.cutoff},
                )
            ).one()
            tenant_id = rng.choice(self.ids)
            entry = await get_tenant_directory_entry(conn, tenant_id=tenant_id)
            page = await list_tenants(conn, limit=20)
        if row.n < self.last_count or row.known != len(self.ids) or row.keys != self.keys:
            self.bad.append(
                f"count {row.n} (before {self.last_count}), known {row.known}/{len(self.ids)}, "
                f"keys {row.keys}/{self.keys}"
            )
        self.last_count = max(self.last_count, row.n)
        expected = self.baseline[tenant_id]
        if (
            entry is None
            or (
                entry.name,
                entry.created_at,
                entry.updated_at,
                entry.active_keys,
                entry.last_position,
            )
            != expected
        ):
            self.bad.append(f"tenant {tenant_id}: {entry} != {expected}")
        if len(page) != 20:
            self.bad.append(f"list page of {len(page)}")

    async def loop(self, stop: Any, reads: Any) -> None:
        engine = create_engine(self.url, pool_size=2)
        rng = random.Random(3)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.one(engine, rng)
                except Exception as exc:
                    self.errors.append(repr(exc))
                self.reads += 1
                reads.value = self.reads
                await asyncio.sleep(max(0.0, 0.02 - (time.monotonic() - started)))
        finally:
            await engine.dispose()

    def run_in_child(self, stop: Any, reads: Any, results: Any) -> None:
        asyncio.run(self.loop(stop, reads))
        results.put((self.reads, self.errors, self.bad))


class ReaderProcess:
    def __init__(self, url: str, baseline: dict[uuid.UUID, Row]) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop, self.count, self.results = (
            context.Event(),
            context.Value("i", 0),
            context.Queue(),
        )
        self.process = context.Process(
            target=Reader(url, baseline).run_in_child,
            args=(self.stop, self.count, self.results),
            name="r12-reader",
        )
        self.process.start()

    @property
    def reads(self) -> int:
        return int(self.count.value)

    async def finish(self) -> tuple[int, list[str], list[str]]:
        self.stop.set()
        outcome = await asyncio.to_thread(self.results.get, True, 60)
        await asyncio.to_thread(self.process.join, 30)
        return outcome
