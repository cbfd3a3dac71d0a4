"""Backbone benchmark: each figure beside its raw ceiling, measured in the same run.

(a) append transactions/s (one event + its outbox row each, N concurrent writers) vs plain
    one-row insert transactions on the same server;
(b) relay events/s draining a pre-filled outbox vs raw pipelined publish-with-confirms of the
    same messages to the same exchange and queue;
(c) commit-to-broker latency p50/p99 at a fixed offered rate: the relay and the timing consumer
    run in their own processes, as deployed, so the writer's CPU does not skew the receipts;
(d) R17: append throughput of 64 writers with the post-commit NOTIFY hint vs without it.

It creates its own database (on METACHAT_DATABASE_URL's server, or the embedded pgserver under
.metachat/bench), its own exchange and a durable queue bound `#`, and removes them at the end.
Each section prints progress, then one JSON line; the last line is the combined JSON.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import msgspec
import psycopg
from bench_latency import bench_latency, db, emit, say  # scripts/ is on sys.path

from metachat.bootstrap import Deps, build
from metachat.database import migrate
from metachat.database.embedded import ensure_database, start_embedded
from metachat.database.engine import sqlalchemy_url
from metachat.eventstore.envelope import Metadata
from metachat.eventstore.publisher import IN_FLIGHT_BATCHES, to_message
from metachat.eventstore.relay import Relay
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.kernel.logging import configure_logging
from metachat.settings import AmqpSettings, RelaySettings, Settings, load_settings
from metachat.tenants.events import TenantRenamed

ROOT = Path(__file__).resolve().parents[1]
TAG = uuid.uuid4().hex[:8]
Step = Callable[[], Awaitable[None]]


async def timed_loop(seconds: float, label: str, steps: list[Step]) -> float:
    """Run each step repeatedly, concurrently, for `seconds`; print progress; return steps/s."""
    done, deadline = [0], time.perf_counter() + seconds

    async def loop(step: Step) -> None:
        while time.perf_counter() < deadline:
            await step()
            done[0] += 1

    start = time.perf_counter()
    tasks = [asyncio.create_task(loop(step)) for step in steps]
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=1.0)
        say(f"{label}: {done[0]:>8} in {time.perf_counter() - start:5.1f} s")
    await asyncio.gather(*tasks)
    return done[0] / (time.perf_counter() - start)


async def a_tenant(deps: Deps) -> Metadata:
    tenant_id = uuid7()
    async with await db(deps) as conn:
        await conn.execute("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (%s)", (tenant_id,))
    return Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())


def appender(deps: Deps, meta: Metadata) -> Step:
    """A writer appending one event per transaction to its own stream."""
    stream, version = f"bench-{uuid.uuid4()}", [0]

    async def step() -> None:
        event = TenantRenamed(name="bench")
        await deps.store.append(stream, [event], expected_version=version[0], metadata=meta)
        version[0] += 1

    return step


async def bench_append(deps: Deps, args: argparse.Namespace) -> dict[str, Any]:
    print(f"(a) append: {args.writers} writers, {args.seconds} s per run", flush=True)
    meta = await a_tenant(deps)
    writers = [appender(deps, meta) for _ in range(args.writers)]
    rate = await timed_loop(args.seconds, "append txns", writers)
    conns = [await db(deps) for _ in range(args.writers)]
    await conns[0].execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, body jsonb NOT NULL)")

    def raw(conn: psycopg.AsyncConnection[Any]) -> Step:
        async def step() -> None:
            await conn.execute("INSERT INTO bench_raw (body) VALUES (%s::jsonb)", ('{"n":"b"}',))

        return step

    raw_rate = await timed_loop(args.seconds, "raw insert txns", [raw(c) for c in conns])
    await conns[0].execute("DROP TABLE bench_raw")
    for conn in conns:
        await conn.close()
    return emit(
        {
            "bench": "append",
            "writers": args.writers,
            "txn_per_s": round(rate),
            "raw_insert_txn_per_s": round(raw_rate),
            "ratio": round(rate / raw_rate, 3),
        }
    )


async def prefill(deps: Deps, count: int) -> None:
    async with await db(deps) as conn:
        # The append section's rows are not part of this run: start from an empty outbox.
        await conn.execute("DELETE FROM eventstore.outbox")
    meta = await a_tenant(deps)
    for start in range(0, count, 100):
        events = [TenantRenamed(name=f"n{i}") for i in range(start, min(count, start + 100))]
        await deps.store.append(f"fill-{uuid.uuid4()}", events, expected_version=0, metadata=meta)
    say(f"outbox pre-filled with {count} events")


async def drain_with_relay(deps: Deps, count: int) -> float:
    relay, stop = Relay(deps.settings, database_url=deps.database_url), asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    while not relay.stats.leading:  # noqa: ASYNC110 - polling the relay's counters, no event exists
        await asyncio.sleep(0.001)
    start = last = time.perf_counter()
    while relay.stats.published < count:
        await asyncio.sleep(0.002)
        if time.perf_counter() - last >= 1.0:
            last = time.perf_counter()
            say(f"relay published {relay.stats.published:>8} of {count}")
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    return count / elapsed


async def raw_publish(deps: Deps, count: int, window: int) -> float:
    """The ceiling: the same messages, built beforehand, published in windows of `window` with
    two windows awaiting confirms at a time (the relay's pipelining depth), nothing else."""
    sample = (await deps.store.read_all(after=0, limit=1))[0].envelope
    envs = [msgspec.structs.replace(sample, event_id=uuid7()) for _ in range(count)]
    messages = [(to_message(e), e.routing_key) for e in envs]
    async with await aio_pika.connect(deps.settings.amqp.url) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(deps.settings.amqp.exchange)
        start = last = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for offset in range(0, count, window):
            chunk = messages[offset : offset + window]
            pending.append(
                asyncio.gather(*(exchange.publish(m, k, mandatory=True) for m, k in chunk))
            )
            if len(pending) == IN_FLIGHT_BATCHES:
                await pending.pop(0)
            if time.perf_counter() - last >= 1.0:
                last = time.perf_counter()
                say(f"raw published {offset + len(chunk):>8} of {count}")
        await asyncio.gather(*pending)
        return count / (time.perf_counter() - start)


async def bench_relay(
    deps: Deps, queue: aio_pika.abc.AbstractQueue, args: argparse.Namespace
) -> dict[str, Any]:
    print(f"(b) relay: drain {args.events} pre-filled events, batch {args.batch_size}", flush=True)
    await prefill(deps, args.events)
    relay_rate = await drain_with_relay(deps, args.events)
    await queue.purge()
    raw_rate = await raw_publish(deps, args.events, args.batch_size)
    await queue.purge()
    return emit(
        {
            "bench": "relay",
            "events": args.events,
            "batch_size": args.batch_size,
            "events_per_s": round(relay_rate),
            "raw_publish_confirm_per_s": round(raw_rate),
            "ratio": round(relay_rate / raw_rate, 3),
        }
    )


async def bench_hint(deps: Deps, args: argparse.Namespace) -> dict[str, Any]:
    """R17: the post-commit NOTIFY hint must not cost the writers throughput."""
    n = args.hint_writers
    print(f"(d) post-commit hint: {n} writers without, then with the hint", flush=True)
    meta = await a_tenant(deps)
    notifier = deps.store.notifier
    if notifier is None:
        raise RuntimeError("the store has no notifier")
    deps.store.notifier = None
    without = await timed_loop(
        args.seconds, "appends without hint", [appender(deps, meta) for _ in range(n)]
    )
    deps.store.notifier, sent_before = notifier, notifier.sent
    with_hint = await timed_loop(
        args.seconds, "appends with hint", [appender(deps, meta) for _ in range(n)]
    )
    return emit(
        {
            "bench": "hint",
            "writers": n,
            "with_hint_txn_per_s": round(with_hint),
            "without_hint_txn_per_s": round(without),
            "ratio": round(with_hint / without, 3),
            "notifies_sent": notifier.sent - sent_before,
        }
    )


def fresh_database() -> tuple[str, str]:
    """Create a database for this run; return (its URL, an admin URL on the same server)."""
    name, given = f"metachat_bench_{TAG}", os.environ.get("METACHAT_DATABASE_URL")
    if not given:
        given = start_embedded(ROOT / ".metachat" / "bench", database=name)
    admin = sqlalchemy_url(given).set(database="postgres", drivername="postgresql")
    admin_url = admin.render_as_string(hide_password=False)
    ensure_database(admin_url, name)
    url = admin.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url, admin_url


def bench_settings(url: str, args: argparse.Namespace) -> Settings:
    base = load_settings(
        {
            k: v
            for k, v in os.environ.items()
            if k.startswith("METACHAT_") and k != "METACHAT_DATABASE_URL"
        }
    )
    return msgspec.structs.replace(
        base,
        env="test",
        database_url=url,
        data_dir=ROOT / ".metachat" / "bench",
        amqp=AmqpSettings(
            url=base.amqp.url, exchange=f"bench.{TAG}.events", queue_prefix=f"bench.{TAG}."
        ),
        relay=RelaySettings(batch_size=args.batch_size),
    )


async def main(args: argparse.Namespace) -> None:
    configure_logging(level="WARNING", json=False)
    url, admin_url = fresh_database()
    settings = bench_settings(url, args)
    deps = await build(
        settings, database_url=url, pool_size=max(args.writers, args.hint_writers) // 2 + 4
    )
    connection = await aio_pika.connect(settings.amqp.url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            f"bench.{TAG}.sink", durable=True, arguments={"x-queue-type": args.queue_type}
        )
        await queue.bind(exchange, "#")
        sections = {
            "append": lambda: bench_append(deps, args),
            "relay": lambda: bench_relay(deps, queue, args),
            "latency": lambda: bench_latency(deps, queue, args),
            "hint": lambda: bench_hint(deps, args),
        }
        figures = {name: await run() for name, run in sections.items() if name in args.only}
        emit({"bench": "backbone", **figures})
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    finally:
        await connection.close()
        await deps.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "metachat_bench_{TAG}" WITH (FORCE)')


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", type=int, default=16, help="concurrent append writers")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each append run")
    parser.add_argument(
        "--events", type=int, default=20_000, help="events pre-filled for the relay run"
    )
    parser.add_argument(
        "--batch-size", type=int, default=500, help="relay batch and raw publish window"
    )
    parser.add_argument(
        "--rate", type=int, default=500, help="offered events/s for the latency run"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=10.0, help="duration of the latency run"
    )
    parser.add_argument(
        "--only",
        type=lambda raw: set(raw.split(",")),
        default={"append", "relay", "latency", "hint"},
        help="comma-separated sections to run (append,relay,latency,hint)",
    )
    parser.add_argument(
        "--hint-writers", type=int, default=64, help="concurrent writers for the hint comparison"
    )
    parser.add_argument(
        "--queue-type",
        choices=["quorum", "classic"],
        default="quorum",
        help="type of the durable queue bound to the exchange",
    )
    # scripts/bench hands the same arguments to every benchmark: ignore the others' options.
    return parser.parse_known_args(argv)[0]


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
