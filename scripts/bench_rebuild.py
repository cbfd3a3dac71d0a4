"""Rebuild benchmark (R14): projection rebuild events/s beside a raw scan of the events table.

Creates its own database (on METACHAT_DATABASE_URL's server, or the embedded pgserver under
.metachat/bench), migrates it, appends `--events` tenant events (five per tenant: created, key
issued, renamed, key issued, key revoked), then measures in the same run:
- raw scan: `SELECT *` of every events row through psycopg, fetched to Python (the ceiling);
- rebuild: `metachat projections rebuild tenant_directory` end to end (replay into a new
  generation, hand-over, switch, drop of the old generation).
Progress lines go to stdout; the last line is one JSON object. The database is dropped at the end.

    uv run python scripts/bench_rebuild.py --events 100000
"""

import argparse
import asyncio
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from sqlalchemy import text

from metachat.bootstrap import Deps, build
from metachat.database import migrate
from metachat.database.embedded import ensure_database, start_embedded
from metachat.database.engine import libpq_url, sqlalchemy_url
from metachat.eventstore.envelope import Event, Metadata
from metachat.eventstore.projection import RebuildProgress
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.kernel.logging import configure_logging
from metachat.settings import Secret, Settings
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked, TenantCreated, TenantRenamed
from metachat.tenants.model import stream_id
from metachat.worker.projector_role import rebuild

ROOT = Path(__file__).resolve().parents[1]
TAG = uuid.uuid4().hex[:8]
EVENTS_PER_TENANT = 5


def say(line: str) -> None:
    print(f"  {line}", flush=True)


def fresh_database() -> tuple[str, str, str]:
    """Create this run's database; return (its URL, an admin URL, its name)."""
    name, given = f"metachat_bench_rebuild_{TAG}", os.environ.get("METACHAT_DATABASE_URL")
    if not given:
        given = start_embedded(ROOT / ".metachat" / "bench", database=name)
    admin = sqlalchemy_url(given).set(database="postgres", drivername="postgresql")
    admin_url = admin.render_as_string(hide_password=False)
    ensure_database(admin_url, name)
    url = admin.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url, admin_url, name


def a_key() -> ApiKeyIssued:
    return ApiKeyIssued(
        key_id=uuid7(),
        name="bench",
        prefix=uuid7().hex[-12:],
        last_four="abcd",
        scopes=["tenant:read"],
    )


def tenant_history(tenant_id: uuid.UUID, n: int) -> list[Event]:
    first, second = a_key(), a_key()
    return [
        TenantCreated(tenant_id=tenant_id, name=f"tenant {n}"),
        first,
        TenantRenamed(name=f"tenant {n} renamed"),
        second,
        ApiKeyRevoked(key_id=first.key_id, reason="bench"),
    ]


async def append_events(deps: Deps, total: int, *, writers: int = 4, per_tx: int = 100) -> int:
    """Append `total` events (rounded up to whole tenants) with concurrent writers."""
    tenants = -(-total // EVENTS_PER_TENANT)
    done, started = [0], time.perf_counter()
    chunks = [range(i, min(i + per_tx, tenants)) for i in range(0, tenants, per_tx)]

    async def write(mine: list[range]) -> None:
        for chunk in mine:
            async with deps.engine.begin() as conn:
                for n in chunk:
                    tenant_id = uuid7()
                    await conn.execute(
                        text("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (:t)"),
                        {"t": tenant_id},
                    )
                    meta = Metadata(
                        tenant_id=tenant_id, actor=Actor.system("bench"), correlation_id=uuid7()
                    )
                    await deps.store.append(
                        stream_id(tenant_id),
                        tenant_history(tenant_id, n),
                        expected_version=0,
                        metadata=meta,
                        conn=conn,
                    )
            done[0] += len(chunk) * EVENTS_PER_TENANT
            if len(chunks) < 20 or chunk.start % (per_tx * (len(chunks) // 10)) == 0:
                say(
                    f"appended {done[0]:>8} / {tenants * EVENTS_PER_TENANT} events "
                    f"({done[0] / (time.perf_counter() - started):,.0f} events/s)"
                )

    await asyncio.gather(*(write(chunks[w::writers]) for w in range(writers)))
    return tenants * EVENTS_PER_TENANT


async def raw_scan(url: str) -> tuple[int, float]:
    """SELECT every events row to Python; return (rows, seconds)."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
        rows = await (
            await conn.execute("SELECT * FROM eventstore.events ORDER BY position")
        ).fetchall()
    return len(rows), time.perf_counter() - started


def progress_printer() -> Any:
    last = [0.0]

    def show(report: RebuildProgress) -> None:
        now = time.perf_counter()
        if report.phase in {"replay", "catch-up"} and now - last[0] < 0.5:
            return
        last[0] = now
        share = 100 * report.position / report.head if report.head else 100.0
        say(
            f"rebuild {report.name} g{report.generation} [{report.phase}]: "
            f"{report.events:>8} events, position {report.position}/{report.head} "
            f"({share:.0f}%), {report.events_per_s:,.0f} events/s"
        )

    return show


async def main(args: argparse.Namespace) -> None:
    configure_logging(level="WARNING", json=False)
    url, admin_url, name = fresh_database()
    settings = Settings(
        env="test",
        database_url=url,
        data_dir=ROOT / ".metachat" / "bench",
        secret_key=Secret(secrets.token_urlsafe(32)),
        api_key_pepper=Secret(secrets.token_urlsafe(32)),
    )
    deps = await build(settings, database_url=url, pool_size=8)
    try:
        print(f"bench_rebuild: database {name}", flush=True)
        events = await append_events(deps, args.events)
        rows, scan_s = await raw_scan(url)
        say(f"raw scan: {rows} rows in {scan_s:.2f} s ({rows / scan_s:,.0f} events/s)")
        result = await rebuild(deps, "tenant_directory", progress=progress_printer())
        say(
            f"rebuild: {result.events} events in {result.seconds:.2f} s "
            f"({result.events_per_s:,.0f} events/s), hand-over "
            f"{result.handover_seconds * 1000:.1f} ms, switch {result.switch_seconds * 1000:.1f} ms"
        )
    finally:
        await deps.close()
        with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        msgspec.json.encode(
            {
                "bench": "rebuild",
                "events": result.events,
                "appended": events,
                "events_per_s": round(result.events_per_s),
                "raw_scan_events_per_s": round(rows / scan_s),
                "seconds": round(result.seconds, 3),
                "switch_ms": round(result.switch_seconds * 1000, 2),
                "handover_ms": round(result.handover_seconds * 1000, 2),
            }
        ).decode(),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
