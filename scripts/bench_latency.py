"""Section (c) of the backbone benchmark: commit-to-broker latency at a fixed offered rate.

The relay, a timing consumer and two writers run as separate processes, as deployed, so that no
process's CPU skews another's clock readings. A writer appends one event per transaction at a
fixed rate (open loop) and prints `<event id> <unix time>` at each commit; the sink prints
`<message id> <unix time>` for each message from a queue bound `#`. Latency = receipt - commit.

Run as a script, this file is one of those processes: `relay`, `sink <queue>` or
`writer <rate> <seconds>`, configured by METACHAT_* variables.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from typing import Any

import aio_pika
import psycopg

from metachat.bootstrap import Deps, build
from metachat.database.engine import libpq_url
from metachat.eventstore.envelope import Metadata
from metachat.eventstore.relay import Relay
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.kernel.logging import configure_logging
from metachat.settings import Settings, load_settings
from metachat.tenants.events import TenantRenamed


def say(line: str) -> None:
    print(f"  {line}", flush=True)


def emit(figures: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(figures), flush=True)
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def db(deps: Deps) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(libpq_url(deps.database_url), autocommit=True)


async def a_tenant(deps: Deps) -> Metadata:
    tenant_id = uuid7()
    async with await db(deps) as conn:
        await conn.execute("INSERT INTO tenants.tenant_ids (tenant_id) VALUES (%s)", (tenant_id,))
    return Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid7())


async def write_at_rate(settings: Settings, rate: float, seconds: float) -> None:
    """Append one event per transaction at `rate`/s (open loop); print commits."""
    deps = await build(settings, database_url=settings.database_url, pool_size=8)
    meta, due = await a_tenant(deps), asyncio.Queue[int]()

    async def worker() -> None:
        async with deps.engine.connect() as conn:  # held: no pool checkout and ping per append
            while (slot := await due.get()) >= 0:
                async with conn.begin():
                    recorded = await deps.store.append(
                        f"lat-{uuid.uuid4()}",
                        [TenantRenamed(name=f"{slot}")],
                        expected_version=0,
                        metadata=meta,
                        conn=conn,
                    )
                print(recorded[0].envelope.event_id, time.time(), flush=True)
                deps.store.committed()

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    start, total = time.perf_counter(), int(rate * seconds)
    for slot in range(total):
        await asyncio.sleep(max(0.0, start + slot / rate - time.perf_counter()))
        due.put_nowait(slot)
    for _ in workers:
        due.put_nowait(-1)
    await asyncio.gather(*workers)
    print(f"# {total / (time.perf_counter() - start):.1f}", flush=True)
    await deps.close()


async def run_child(role: str, extra: list[str]) -> None:
    """Run one role until SIGTERM (relay, sink) or until its work is done (writer)."""
    settings = load_settings({k: v for k, v in os.environ.items() if k.startswith("METACHAT_")})
    configure_logging(level="WARNING", json=False)
    if role == "writer":
        await write_at_rate(settings, float(extra[0]), float(extra[1]))
        return
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if role == "relay":
        await Relay(settings, database_url=settings.database_url or "").run(stop)
        return
    async with await aio_pika.connect(settings.amqp.url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(extra[0])

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            print(message.message_id, time.time(), flush=True)

        await queue.consume(on_message, no_ack=True)
        await stop.wait()


async def child(deps: Deps, role: str, *extra: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")} | {
        "METACHAT_ENV": "test",
        "METACHAT_DATABASE_URL": deps.database_url,
        "METACHAT_DATA_DIR": str(deps.settings.data_dir),
        "METACHAT_AMQP_URL": deps.settings.amqp.url,
        "METACHAT_AMQP__EXCHANGE": deps.settings.amqp.exchange,
        "METACHAT_RELAY__BATCH_SIZE": str(deps.settings.relay.batch_size),
    }
    for name, secret in (
        ("SECRET_KEY", deps.settings.secret_key),
        ("API_KEY_PEPPER", deps.settings.api_key_pepper),
    ):
        if secret is not None:
            env[f"METACHAT_{name}"] = secret.value
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, role, *extra, env=env, stdout=asyncio.subprocess.PIPE
    )


async def wait_leading(deps: Deps, relay: asyncio.subprocess.Process) -> None:
    holder = f"{socket.gethostname()}:{relay.pid}"
    query = "SELECT 1 FROM eventstore.heartbeats WHERE name = 'relay' AND holder = %s"
    async with await db(deps) as conn:
        while not await (await conn.execute(query, (holder,))).fetchone():  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)


async def read_lines(
    proc: asyncio.subprocess.Process, into: dict[str, float], notes: list[str]
) -> None:
    """Collect `<event id> <unix time>` lines from a child; keep `# ...` lines as notes."""
    if proc.stdout is None:
        raise RuntimeError("child started without a stdout pipe")
    async for raw in proc.stdout:
        line = raw.decode().strip()
        if line.startswith("#"):
            notes.append(line[1:].strip())
        elif line:
            message_id, at = line.split()
            into.setdefault(message_id, float(at))


async def bench_latency(
    deps: Deps, queue: aio_pika.abc.AbstractQueue, args: argparse.Namespace
) -> dict[str, Any]:
    print(
        f"(c) latency: {args.rate} events/s for {args.latency_seconds} s, from 2 writer processes",
        flush=True,
    )
    committed: dict[str, float] = {}
    received: dict[str, float] = {}
    notes: list[str] = []
    sink = await child(deps, "sink", queue.name)
    readers = [asyncio.create_task(read_lines(sink, received, notes))]
    relay = await child(deps, "relay")
    await wait_leading(deps, relay)
    writers = [
        await child(deps, "writer", str(args.rate / 2), str(args.latency_seconds)) for _ in range(2)
    ]
    readers += [asyncio.create_task(read_lines(w, committed, notes)) for w in writers]
    while not all(r.done() for r in readers[1:]) or not committed.keys() <= received.keys():
        await asyncio.sleep(1.0)
        say(f"committed {len(committed):>6}, received {len(received):>6}")
    for proc in (relay, sink):
        proc.terminate()
        await proc.wait()
    await asyncio.gather(*readers)
    latencies = [(received[k] - committed[k]) * 1000 for k in committed]
    return emit(
        {
            "bench": "latency",
            "rate": args.rate,
            "achieved_rate": round(sum(map(float, notes))),
            "events": len(latencies),
            "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2),
        }
    )


if __name__ == "__main__":
    asyncio.run(run_child(sys.argv[1], sys.argv[2:]))
