"""Assistant benchmark (issue 4): customer message committed → reply committed, at a fixed rate.

The relay and the consumers role run as deployed, `python -m metachat run --role relay` and
`... --role consumers` (`--assistant-consumers N` processes of it; `--assistant-projector` adds
`... --role projector`; METACHAT_ENV=production, JSON logs at INFO), on a database made for
this run and migrated with `metachat db upgrade`, with their own exchange and queue prefix
(METACHAT_AMQP__EXCHANGE, METACHAT_AMQP__QUEUE_PREFIX). The tenant comes from `metachat
tenants create`; its assistant is configured through the public settings only
(`configure_assistant`): the built-in offline model (in-process, no network: the zero-latency
model), `burst_window_ms` 0, and `calls_per_minute` 10,000 (the default 120 would refuse all
but the first 120 calls); everything else is the default. Without documents the offline model
answers "I don't know" with `[confidence: very low]`, which the default confidence policy sends
and asks a human to review (`send_and_review`): the reply and `conversations.review_requested`
in one append, the conversation staying with the assistant.

A writer process posts customer messages through the conversations use case at
`--assistant-rate` per second for `--assistant-seconds`, open loop, round-robin over
`--assistant-conversations`; a sink process consumes a queue bound to the exchange with
`*.conversations.message_posted`. First, unmeasured, the writer posts at the same rate for
`--assistant-warmup-seconds` (3) to 100 other conversations, and every one is answered: the
roles' first second (connections opened, caches filled, code run for the first time) is behind
them when measuring starts, as for a deployed role. Measured per message
(bench_assistant_report.py says exactly what each timestamp is): commit → on the broker (the
backbone's commit-to-broker latency, bench_latency.py's definition, on these very messages),
commit → reply committed, and commit → reply on the broker. "The pipeline adds" is the
difference of the percentiles of the second and the first; the target is p99 < 50 ms at 100
messages/s, every message answered exactly once. The last line is one JSON object. The
database and every broker object of the run are deleted at the end.

    uv run --frozen python scripts/bench_assistant.py --assistant-rate 100 --assistant-seconds 15
"""

import argparse
import asyncio
import dataclasses
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
from bench_api_cpu import postmaster_pid  # scripts/ is on sys.path
from bench_api_setup import BENCH_DIR, SCRIPTS, TAG, Server, cli, say, server_env
from bench_assistant_report import Observed, distribution, figures, read_logs, show
from bench_assistant_watch import (
    Sessions,
    beam_pids,
    counters,
    cpu,
    cpu_per_message,
    drain,
    finish,
    profile,
    show_sessions,
)

from metachat.bootstrap import Deps, build
from metachat.conversations import Context, ConversationDeps
from metachat.conversations.handlers import open_conversation
from metachat.database.embedded import ensure_database, start_embedded
from metachat.database.engine import sqlalchemy_url
from metachat.eventstore.consumer import topology
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import Settings, load_settings
from metachat.tenants import AssistantDeps
from metachat.tenants.assistant.handlers import configure_assistant
from metachat.tenants.commands import AssistantSettings
from metachat.worker.consumers_role import CONSUMERS

TARGET_ADDED_P99_MS = 50.0
WARM_UP_CONVERSATIONS = 100
ROUTING = "*.conversations.message_posted"


def emit(figures: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(figures), flush=True)
    return figures


def fresh_database() -> tuple[str, str, str]:
    """Create this run's (empty) database; return (its URL, an admin URL, its name)."""
    name, given = f"metachat_bench_assistant_{TAG}", os.environ.get("METACHAT_DATABASE_URL")
    if not given:
        given = start_embedded(BENCH_DIR, database=name)
    admin = sqlalchemy_url(given).set(database="postgres", drivername="postgresql")
    admin_url = admin.render_as_string(hide_password=False)
    ensure_database(admin_url, name)
    return admin.set(database=name).render_as_string(hide_password=False), admin_url, name


def bench_env(url: str) -> dict[str, str]:
    """The production configuration of bench_api.py, on this run's exchange and queues."""
    return server_env(url) | {
        "METACHAT_AMQP__EXCHANGE": f"bench.{TAG}.events",
        "METACHAT_AMQP__QUEUE_PREFIX": f"bench.{TAG}.",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings({k: v for k, v in env.items() if k.startswith("METACHAT_")})


async def set_up(deps: Deps, args: argparse.Namespace, count: int) -> tuple[str, list[str]]:
    """The tenant (from the CLI), its assistant's settings and `count` conversations."""
    env = bench_env(deps.database_url)
    tenant_id = uuid.UUID(json.loads(cli(env, "tenants", "create", f"bench-{TAG}"))["tenant_id"])
    settings = AssistantSettings(
        burst_window_ms=0, calls_per_minute=args.assistant_calls_per_minute
    )
    await configure_assistant(
        tenant_id,
        settings,
        deps=AssistantDeps(store=deps.store, box=deps.secrets),
        actor=Actor.operator("bench"),
        correlation_id=uuid7(),
    )
    conversations = ConversationDeps(store=deps.store)
    ctx = Context(tenant_id=tenant_id, actor=Actor.system("bench"), correlation_id=uuid7())
    ids: list[str] = []

    async def one(n: int) -> None:
        view = await open_conversation(conversations, ctx, channel="api", customer_id=f"c-{n}")
        ids.append(str(view.conversation_id))

    for start in range(0, count, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))
    say(
        f"tenant {tenant_id}: offline model, burst window 0, {settings.calls_per_minute} calls "
        f"a minute; {count} conversations opened"
    )
    return str(tenant_id), ids


async def wait_for(check: Callable[[], bool], what: str, proc: Server, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: {what} did not happen; its log:\n{proc.tail()}")
        await asyncio.sleep(0.1)


def logged(server: Server, event: str) -> Callable[[], bool]:
    """Whether the server's JSON log has a line of `event` (with or without spaces)."""
    line = re.compile(rf'"event":\s*"{re.escape(event)}"')
    return lambda: line.search(server.log.read_text(errors="replace")) is not None


READY = {
    "relay": "relay_leading",
    "consumers": "consumers_started",
    "projector": "projector_started",
}


@dataclasses.dataclass(frozen=True)
class Roles:
    """The product's processes of a run: consumers processes compete for the same queues."""

    relay: Server
    consumers: list[Server]
    projector: Server | None

    @property
    def all(self) -> list[Server]:
        return [self.relay, *self.consumers, *([self.projector] if self.projector else [])]

    def pids(self) -> dict[str, int]:
        return {server.name.replace("-", "_"): server.proc.pid for server in self.all}


async def start_roles(
    env: dict[str, str], started: list[Server], *, consumers: int, projector: bool
) -> Roles:
    """The relay, the consumers role (`consumers` processes) and the projector, each
    `python -m metachat run --role ...`."""
    names = ["relay", "consumers", *[f"consumers-{n}" for n in range(2, consumers + 1)]]
    servers = []
    for name in [*names, *(["projector"] if projector else [])]:
        role = name.split("-")[0]
        command = [sys.executable, "-m", "metachat", "run", "--role", role]
        # libpq names each process's sessions in pg_stat_activity (`application_name`).
        server = Server(name, command, env | {"PGAPPNAME": name}, 0)
        started.append(server)
        await wait_for(logged(server, READY[role]), READY[role], server, 60.0)
        servers.append(server)
    say(", ".join(f"{server.name} pid {server.proc.pid}" for server in servers) + ": started")
    return Roles(servers[0], servers[1 : len(names)], servers[-1] if projector else None)


async def child(
    role: str, job: dict[str, Any], env: dict[str, str], obs: Observed
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """Start a writer or sink process and a task feeding its lines to `obs`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPTS / "bench_assistant_procs.py"),
        role,
        env=env | {"PGAPPNAME": role},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError(f"{role} started without its pipes")
    proc.stdin.write(json.dumps(job).encode())
    proc.stdin.close()
    stdout = proc.stdout

    async def read() -> None:
        async for raw in stdout:
            obs.take(raw.decode())

    return proc, asyncio.create_task(read())


async def measure(
    env: dict[str, str], args: argparse.Namespace, started: list[Server], run: dict[str, Any]
) -> dict[str, Any]:
    """Start the roles, the sink and the writer; wait for the replies; return the figures."""
    roles = await start_roles(
        env, started, consumers=args.assistant_consumers, projector=args.assistant_projector
    )
    obs = Observed()
    sink, sink_reader = await child("sink", {"queue": run["sink_queue"]}, env, obs)
    children = [sink]
    try:
        return await _measure(
            env,
            args,
            run,
            roles=roles,
            obs=obs,
            children=children,
            sink_reader=sink_reader,
        )
    finally:
        for proc in children:  # on the way out of a failure: no process is left behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _measure(
    env: dict[str, str],
    args: argparse.Namespace,
    run: dict[str, Any],
    *,
    roles: Roles,
    obs: Observed,
    children: list[asyncio.subprocess.Process],
    sink_reader: asyncio.Task[None],
) -> dict[str, Any]:
    relay, consumers, sink = roles.relay, roles.consumers[0], children[0]
    while not obs.notes:
        if sink.returncode is not None:
            raise RuntimeError("the sink exited before consuming")
        await asyncio.sleep(0.05)
    warm = await _warm_up(env, args, run, obs, consumers) if run["warm_up"] else None
    job = {
        "tenant_id": run["tenant_id"],
        "conversations": run["conversations"],
        "rate": args.assistant_rate,
        "seconds": args.assistant_seconds,
        "workers": 8,
        "start_at": time.time() + 1.0,
    }
    print(
        f"posting {args.assistant_rate:g} customer messages/s for {args.assistant_seconds:g} s "
        f"over {len(run['conversations'])} conversations",
        flush=True,
    )
    writer, writer_reader = await child("writer", job, env, obs)
    children.append(writer)
    pids = roles.pids() | {"sink": sink.pid, "driver": os.getpid()}  # driver: this script
    pids |= {"rabbitmq": beam for beam in beam_pids()}  # noqa: B035 - one VM at most
    # The CPU counts start when the writer does: on a slow machine its start-up outlasts the
    # second it is given, and would otherwise count as "rest of machine".
    while not any(note.startswith("started ") for note in obs.notes):
        if writer.returncode is not None:
            raise RuntimeError(f"the writer exited before posting (code {writer.returncode})")
        await asyncio.sleep(0.005)
    url = env["METACHAT_DATABASE_URL"]
    counted, before, sessions = await counters(url), cpu(pids, run["postmaster"]), Sessions(url)
    await sessions.start()
    spy = None
    if args.assistant_profile:
        out = BENCH_DIR / f"profile-assistant-{TAG}.txt"
        spy = await profile(consumers.proc.pid, args.assistant_seconds, out)
    progress = drain(obs, writer, args.assistant_drain, consumers.proc.pid)
    await asyncio.gather(progress, writer.wait())
    if writer.returncode != 0:
        raise RuntimeError(f"the writer failed (exit code {writer.returncode})")
    after = cpu(pids, run["postmaster"])
    seen_sessions = await sessions.stop()
    summary = await finish(spy) if spy is not None else None
    await writer_reader
    await asyncio.sleep(1.0)  # the last replies' own trip to the sink
    sink.terminate()
    await sink.wait()
    await sink_reader
    for server in roles.all:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited during the run:\n{server.tail()}")
        server.stop()
    delivered, notable = read_logs([server.log for server in roles.consumers])
    fig = figures(obs, delivered)
    notes = dict(n.split(" ", 1) for n in obs.notes if " " in n)
    xacts = [b - a for a, b in zip(counted, await counters(url), strict=True)]
    fig |= {
        "achieved_rate": float(notes["rate"]) if "rate" in notes else None,
        "writer_conflicts": int(notes.get("conflicts", -1)),
        "consumers_log": dict(notable),
        "transactions": {"committed": xacts[0], "rolled_back": xacts[1], "sessions": xacts[2]},
        "cpu": cpu_per_message(before, after, fig["messages"], float(notes.get("cpu", 0))),
        "relay_log_warnings": warnings(relay.log),
        "db_sessions": seen_sessions,
        "left_in_queues": await queue_depths(settings_of(env)),
    }
    if summary is not None:
        fig["profile_consumers"] = summary
    return fig | {"warm_up": warm}


async def _warm_up(
    env: dict[str, str],
    args: argparse.Namespace,
    run: dict[str, Any],
    obs: Observed,
    consumers: Server,
) -> dict[str, Any]:
    """Post at the same rate to conversations of their own, unmeasured, until all are answered.

    The processes' first second (connections, caches, every code path's first run) is then
    behind them, as it is for a deployed role; what the warm-up saw is printed apart.
    """
    job = {"tenant_id": run["tenant_id"], "conversations": run["warm_up"], "workers": 8}
    job |= {"rate": args.assistant_rate, "seconds": args.assistant_warmup_seconds}
    print(f"warming up: {args.assistant_warmup_seconds:g} s at the same rate, not measured")
    writer, reader = await child("writer", job | {"start_at": time.time() + 0.5}, env, obs)
    await asyncio.gather(
        drain(obs, writer, args.assistant_drain, consumers.proc.pid), writer.wait(), reader
    )
    if writer.returncode != 0:
        raise RuntimeError(f"the warm-up writer failed (exit code {writer.returncode})")
    await asyncio.sleep(1.0)  # the last replies' trip to the sink
    on_broker = distribution(
        [
            r.received - obs.committed[m][0]
            for m, [r, *_] in obs.answered.items()
            if m in obs.committed
        ]
    )
    say(
        f"warm-up: {len(obs.committed)} messages, commit → reply on the broker p50 "
        f"{on_broker['p50_ms']:.1f} ms, p99 {on_broker['p99_ms']:.1f} ms"
    )
    obs.forget_messages()
    return on_broker


def warnings(log: Path) -> int:
    lines = log.read_text(errors="replace").splitlines()
    return sum('"level": "warning"' in s or '"level": "error"' in s for s in lines)


def report(fig: dict[str, Any], args: argparse.Namespace) -> bool:
    print(
        f"\nat {args.assistant_rate:g} messages/s offered "
        f"({fig['achieved_rate']}/s achieved), commit times from one clock:"
    )
    met = show(fig, TARGET_ADDED_P99_MS)
    shares = {k.removesuffix("_cpu_ms_per_message"): v for k, v in fig["cpu"].items()}
    busy = shares.pop("machine_busy")
    print(
        "  CPU ms per message: "
        + ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
        + f" ({busy:.0%} of {os.cpu_count()} cores busy)"
    )
    tx = fig["transactions"]
    print(
        f"  database: {tx['committed']} transactions committed, {tx['rolled_back']} rolled back, "
        f"{tx['sessions']} sessions opened; the writer's appends refused as stale "
        f"{fig['writer_conflicts']}; consumers log: {fig['consumers_log'] or 'nothing'}; "
        f"relay warnings {fig['relay_log_warnings']}; left in the consumers' queues "
        f"{fig['left_in_queues']}",
        flush=True,
    )
    show_sessions(fig["db_sessions"])
    return met


async def queue_depths(settings: Settings) -> dict[str, int]:
    """Messages still in the consumers' queues and dead-letter queues (the roles stopped)."""
    depths = {}
    async with await aio_pika.connect(settings.amqp.url) as connection:
        for spec in CONSUMERS:
            topo = topology(spec, settings)
            for name in (topo.queue, topo.dead_letter_queue):
                channel = await connection.channel()
                queue = await channel.declare_queue(name, passive=True)
                depths[name.removeprefix(settings.amqp.queue_prefix)] = int(
                    queue.declaration_result.message_count or 0
                )
                await channel.close()
    return depths


async def delete_broker_objects(settings: Settings, sink_queue: str) -> None:
    async with await aio_pika.connect(settings.amqp.url) as connection:
        channel = await connection.channel()
        names = [sink_queue]
        for spec in CONSUMERS:
            topo = topology(spec, settings)
            names += [topo.queue, topo.dead_letter_queue]
        for name in names:
            await channel.queue_delete(name)
        for exchange in {topology(s, settings).dead_letter_exchange for s in CONSUMERS}:
            await channel.exchange_delete(exchange)
        await channel.exchange_delete(settings.amqp.exchange)


async def declare_sink(settings: Settings, name: str) -> None:
    async with await aio_pika.connect(settings.amqp.url) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.amqp.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, ROUTING)


async def main(args: argparse.Namespace) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, when piped
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url, admin_url, name = fresh_database()
    env = bench_env(url)
    settings, ok = settings_of(env), False
    started: list[Server] = []
    sink_queue = f"bench.{TAG}.sink"
    cleanup: list[Callable[[], Awaitable[None]]] = []
    try:
        cli(env, "db", "upgrade")
        with psycopg.connect(url, autocommit=True) as conn:
            data_directory = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        cleanup.append(lambda: delete_broker_objects(settings, sink_queue))
        await declare_sink(settings, sink_queue)
        count = args.assistant_conversations
        warming = WARM_UP_CONVERSATIONS if args.assistant_warmup_seconds > 0 else 0
        deps = await build(settings, database_url=url)
        try:
            tenant_id, opened = await set_up(deps, args, count + warming)
        finally:
            await deps.close()
        conversations, warm_up = opened[:count], opened[count:]
        say(f"database {name} migrated; exchange {settings.amqp.exchange}")
        run = {
            "tenant_id": tenant_id,
            "conversations": conversations,
            "warm_up": warm_up,
            "sink_queue": sink_queue,
            "postmaster": postmaster_pid(data_directory),
        }
        fig = await measure(env, args, started, run)
        met = report(fig, args)
        emit(
            {
                "bench": "assistant",
                "rate": args.assistant_rate,
                "seconds": args.assistant_seconds,
                "conversations": len(conversations),
                "model": "offline",
                "target_added_p99_ms": TARGET_ADDED_P99_MS,
                "target_met": met,
                **fig,
            }
        )
        ok = True
    finally:
        for server in started:
            server.stop()
            if ok:
                server.log.unlink(missing_ok=True)
            else:
                print(f"{server.name} log kept at {server.log}", file=sys.stderr)
        for step in cleanup:
            await step()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # another script's option must never pass for an abbreviation
    )
    parser.add_argument(
        "--assistant-rate", type=float, default=100, help="customer messages/s, open loop"
    )
    parser.add_argument(
        "--assistant-seconds", type=float, default=15.0, help="how long messages are posted"
    )
    parser.add_argument(
        "--assistant-conversations", type=int, default=500, help="conversations posted to"
    )
    parser.add_argument(
        "--assistant-warmup-seconds",
        type=float,
        default=3.0,
        help="posting first, unmeasured, to 100 other conversations (0: none)",
    )
    parser.add_argument(
        "--assistant-drain",
        type=float,
        default=30.0,
        help="seconds to wait for the last replies after the last post",
    )
    parser.add_argument(
        "--assistant-calls-per-minute",
        type=int,
        default=10_000,
        help="the tenant's model call limit (its default is 120; the most it can be, 10,000)",
    )
    parser.add_argument(
        "--assistant-consumers",
        type=int,
        default=1,
        help="consumers role processes (competing consumers of the same queues)",
    )
    parser.add_argument(
        "--assistant-projector",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also run the projector role (the read models), as a whole deployment does",
    )
    parser.add_argument(
        "--assistant-profile",
        action="store_true",
        help="sample the consumers process with py-spy while messages are posted",
    )
    # scripts/bench hands the same arguments to every benchmark: ignore the others' options.
    return parser.parse_known_args(argv)[0]


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
