"""Instructions per customer message in the consumers and relay roles, counted by callgrind.

The latency figures of bench_assistant.py move with whatever else these two shared cores run;
instruction counts do not. This runs the relay and the consumers role as bench_assistant.py
does (production mode, this run's exchange and queues), each under `valgrind --tool=callgrind`
with counting off; posts customer messages one at a time, each waiting for its reply to be
committed; after a warm-up, counts only while `--messages` messages are answered, and prints
the instructions per customer message of each role: everything the process did for it (the
deliveries, the reply, the tracking, the relay's publishing of every event it caused).

    uv run --frozen python scripts/bench_assistant_instructions.py --messages 100

Needs valgrind. PostgreSQL and RabbitMQ are not under callgrind (bench_assistant.py reports
their CPU).
"""

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid
from pathlib import Path

import psycopg
from bench_api_setup import BENCH_DIR, TAG, Server, cli, say  # scripts/ is on sys.path
from bench_assistant import (
    bench_env,
    delete_broker_objects,
    fresh_database,
    logged,
    set_up,
    settings_of,
    wait_for,
)
from bench_callgrind import start_counting, stop_counting, under_callgrind

from metachat.bootstrap import build
from metachat.conversations import Context, ConversationDeps
from metachat.conversations.cache import StreamCache
from metachat.conversations.handlers import post_message
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7

_REPLIES = """SELECT count(*) FROM eventstore.events
WHERE type = 'conversations.message_posted' AND payload->>'sender' = 'assistant'"""


async def start(role: str, env: dict[str, str], out: Path, started: list[Server]) -> Server:
    command = under_callgrind(out, [sys.executable, "-m", "metachat", "run", "--role", role])
    server = Server(role, command, env | {"PGAPPNAME": role}, 0)
    started.append(server)
    ready = "relay_leading" if role == "relay" else "consumers_started"
    await wait_for(logged(server, ready), ready, server, 900.0)
    return server


async def main(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url, admin_url, name = fresh_database()
    env = bench_env(url)
    settings = settings_of(env)
    started: list[Server] = []
    try:
        cli(env, "db", "upgrade")
        deps = await build(settings, database_url=url)
        try:
            tenant_id, conversations = await set_up(deps, args, args.assistant_conversations)
            outs = {role: BENCH_DIR / f"cg-{role}-{TAG}" for role in ("relay", "consumers")}
            say("starting the relay and the consumers role under callgrind (slow)")
            roles = {role: await start(role, env, out, started) for role, out in outs.items()}
            side = ConversationDeps(store=deps.store, cache=StreamCache())
            ctx = Context(
                tenant_id=uuid.UUID(tenant_id),
                actor=Actor(kind="api_key", id="bench"),
                correlation_id=uuid7(),
            )
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            sent = 0

            async def ask() -> None:
                nonlocal sent
                cid = uuid.UUID(conversations[sent % len(conversations)])
                sent += 1
                await post_message(side, ctx, cid, sender="customer", text=f"question {sent}?")
                deadline = time.monotonic() + 120
                while True:
                    row = await (await conn.execute(_REPLIES)).fetchone()
                    if row is not None and row[0] >= sent:
                        return
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no reply to message {sent} within 120 s")
                    await asyncio.sleep(0.02)

            for _ in range(args.warmup):
                await ask()
            say("warmed up; counting")
            for role_name, role in roles.items():
                start_counting(role.proc.pid, outs[role_name])
            for _ in range(args.messages):
                await ask()
            await asyncio.sleep(1.0)  # the last analytics batch and relay marks
            figures = {}
            for role_name, role in roles.items():
                figures[role_name] = stop_counting(role.proc.pid, outs[role_name]) / args.messages
            await conn.close()
        finally:
            await deps.close()
        for role_name, per in figures.items():
            print(f"  {role_name:10} {per / 1e6:8.3f} M instructions per customer message")
        print(json.dumps({"bench": "assistant_instructions", "messages": args.messages, **figures}))
    finally:
        for server in started:
            server.stop()
        await delete_broker_objects(settings, f"bench.{TAG}.sink")
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--assistant-conversations", type=int, default=50)
    parser.add_argument("--assistant-calls-per-minute", type=int, default=10_000)
    asyncio.run(main(parser.parse_known_args()[0]))
