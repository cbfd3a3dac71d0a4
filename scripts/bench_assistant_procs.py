"""The child processes of bench_assistant.py: the customer-message writer and the broker sink.

Run as a script, this file is one of them, configured by METACHAT_* variables and one JSON job
on stdin; each prints one line per observation to stdout, stamped with `time.time()` (this
machine's realtime clock, the clock every other timestamp of the benchmark is read from):

- `writer`: posts customer messages through the conversations use case `post_message` (what
  the API does after authentication) at a fixed rate, open loop (message *i* is due at
  *start + i/rate*), round-robin over the given conversations. Per message, right after its
  transaction committed: `c <message id> <commit time> <occurred_at> <slot>`; when posting
  starts, `# started <time>`; at the end
  `# rate <achieved rate>`, `# cpu <CPU seconds spent posting>` and `# conflicts <appends
  refused by optimistic concurrency>` (each is retried on a fresh read).
- `sink`: consumes a queue bound to the exchange with `*.conversations.message_posted`. Per
  message, the moment aio-pika hands it over: `m <event id> <receipt time> <sender>
  <message id> <occurred_at> <in_reply_to, comma-separated or -> <action or -> <the model
  calls' own latency in ms, from the reply's `details.models`, or ->`.
"""

import asyncio
import gc
import json
import os
import resource
import signal
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import aio_pika

from metachat.bootstrap import build
from metachat.conversations import Context, ConversationDeps
from metachat.conversations.cache import StreamCache
from metachat.conversations.handlers import post_message
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError
from metachat.kernel.logging import configure_logging
from metachat.settings import Settings, load_settings

CUSTOMER = Actor(kind="api_key", id="bench-assistant")
"""Who the customer messages are posted as (the API records the caller's key the same way)."""
QUESTIONS = (
    "What are your opening hours on Saturday?",
    "How long does delivery to Lyon take?",
    "Can I change the colour of my order?",
    "Do you ship to Canada?",
)


def settings_from_env() -> Settings:
    return load_settings({k: v for k, v in os.environ.items() if k.startswith("METACHAT_")})


async def write(job: dict[str, Any]) -> None:
    """Post `job['rate'] * job['seconds']` customer messages at `job['rate']`/s; print commits."""
    settings = settings_from_env()
    workers = int(job["workers"])
    deps = await build(settings, database_url=settings.database_url, pool_size=workers)
    # As the API builds it: its own stream cache (the replies make it stale: it retries then).
    conversations = ConversationDeps(store=deps.store, cache=StreamCache())
    conflicts = [0]

    def counting(append: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await append(*args, **kwargs)
            except ConcurrencyError:
                conflicts[0] += 1
                raise

        return counted

    # Counts the writer's conflicts: an append from the cache (`append_alone`) or after a read.
    deps.store.append = counting(deps.store.append)  # type: ignore[method-assign]
    deps.store.append_alone = counting(deps.store.append_alone)  # type: ignore[method-assign]
    tenant_id = uuid.UUID(job["tenant_id"])
    targets = [uuid.UUID(c) for c in job["conversations"]]
    due: asyncio.Queue[int] = asyncio.Queue()

    async def worker() -> None:
        while (slot := await due.get()) >= 0:
            ctx = Context(tenant_id=tenant_id, actor=CUSTOMER, correlation_id=uuid.uuid4())
            posted = await post_message(
                conversations,
                ctx,
                targets[slot % len(targets)],
                sender="customer",
                text=f"{QUESTIONS[slot % len(QUESTIONS)]} ({slot})",
                external_id=f"bench-{slot}",
            )
            committed = time.time()
            message = posted.message
            occurred_at = message.created_at.timestamp()
            print(f"c {message.message_id} {committed:.6f} {occurred_at:.6f} {slot}")

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    _freeze()
    rate, total = float(job["rate"]), round(float(job["rate"]) * float(job["seconds"]))
    await asyncio.sleep(max(0.0, float(job["start_at"]) - time.time()))
    start, cpu = time.perf_counter(), _cpu_seconds()
    print(f"# started {time.time():.6f}", flush=True)  # late when its start-up took longer
    for slot in range(total):
        await asyncio.sleep(max(0.0, start + slot / rate - time.perf_counter()))
        due.put_nowait(slot)
    for _ in tasks:
        due.put_nowait(-1)
    await asyncio.gather(*tasks)
    print(f"# rate {total / (time.perf_counter() - start):.1f}", flush=True)
    print(f"# cpu {_cpu_seconds() - cpu:.3f}", flush=True)
    print(f"# conflicts {conflicts[0]}", flush=True)
    await deps.close()


def _freeze() -> None:
    """What `metachat run` does once started: the start-up objects leave the collector's view.

    Without it a full collection here took 80-125 ms in the middle of a run (the imports'
    objects scanned again), pausing the writer's posting or the sink's receipts.
    """
    gc.collect()
    gc.freeze()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stamp(raw: str) -> float:
    return datetime.fromisoformat(raw).timestamp()


async def sink(job: dict[str, Any]) -> None:
    """Print every message of the queue until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with await aio_pika.connect(settings_from_env().amqp.url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(job["queue"])

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received = time.time()
            envelope = json.loads(message.body)
            payload = envelope["payload"]
            meta = payload.get("metadata") or {}
            answers = meta.get("in_reply_to") or []
            models = (meta.get("details") or {}).get("models") or []
            model_ms = sum(m.get("latency_ms") or 0 for m in models) if models else "-"
            print(
                f"m {envelope['event_id']} {received:.6f} {payload['sender']} "
                f"{payload['message_id']} {_stamp(envelope['occurred_at']):.6f} "
                f"{','.join(answers) or '-'} {meta.get('action') or '-'} {model_ms}",
                flush=True,
            )

        await queue.consume(on_message, no_ack=True)
        _freeze()
        print("# consuming", flush=True)
        await stop.wait()


async def main(role: str) -> None:
    configure_logging(level="WARNING", json=False)
    job = json.loads(sys.stdin.read())
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if role == "writer":
        await write(job)
    elif role == "sink":
        await sink(job)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
