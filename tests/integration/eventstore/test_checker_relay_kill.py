"""R23 checker, relay faults: SIGKILL the relay process mid-batch again and again; lose nothing.

Writers append continuously across many streams while a real relay process (see `relay_proc`)
is killed with SIGKILL shortly after it starts publishing a backlog, then restarted, until
KILLS kills are proven to have landed mid-batch (published, not yet deleted). A sink queue bound
`#` records every message. At the end the outbox must drain and the checker reports lost
(appended, never received), duplicated (received more than once) and unexpected (received,
never appended). Pass: lost = 0, unexpected = 0, and per stream the first receipts arrive in
version order. Scale with MC_CHECKER_EVENTS (default 10,000) and MC_CHECKER_KILLS (default 5).

The second test cuts the relay's broker connection (rabbitmqctl close_connection, aimed at the
relay's named connection only) at random moments while it publishes; the relay must reconnect
and the same checker must pass.
"""

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from metachat.bootstrap import Deps, build
from metachat.eventstore.envelope import Metadata
from metachat.settings import Settings
from metachat.tenants.events import TenantRenamed
from tests.conftest import REPO, make_settings
from tests.integration.eventstore.relay_support import (
    Sink,
    a_tenant,
    close_broker_connections,
    outbox_rows,
)
from tests.waiting import eventually

EVENTS = int(os.environ.get("MC_CHECKER_EVENTS", "10000"))
KILLS = int(os.environ.get("MC_CHECKER_KILLS", "5"))
WRITERS = 8
STREAMS_PER_WRITER = 25
BACKLOG = 600  # rows waiting when a relay restarts: three batches of 200


@pytest_asyncio.fixture
async def deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    built = await build(make_settings(new_database()), pool_size=WRITERS + 2)
    yield built
    await built.close()


class RelayProcess:
    """The relay as a real OS process, configured through the environment like production."""

    def __init__(self, settings: Settings, database_url: str, log_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")}
        assert settings.secret_key is not None
        assert settings.api_key_pepper is not None
        self.env |= {
            "METACHAT_ENV": "test",
            "METACHAT_DATABASE_URL": database_url,
            "METACHAT_DATA_DIR": str(settings.data_dir),
            "METACHAT_SECRET_KEY": settings.secret_key.value,
            "METACHAT_API_KEY_PEPPER": settings.api_key_pepper.value,
            "METACHAT_AMQP_URL": settings.amqp.url,
            "METACHAT_AMQP__EXCHANGE": settings.amqp.exchange,
            "METACHAT_AMQP__QUEUE_PREFIX": settings.amqp.queue_prefix,
            "METACHAT_RELAY__BATCH_SIZE": "200",
            "METACHAT_RELAY__POLL_INTERVAL": "0.2",
            "METACHAT_RELAY__LEASE_RETRY": "0.2",
            "METACHAT_LOG_JSON": "true",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.eventstore.relay_proc"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, "relay died on its own"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class Writers:
    """Appends 1-3 events per transaction to streams each writer owns, recording what committed."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.appended: dict[str, tuple[str, int]] = {}
        self.done = asyncio.Event()

    async def run(self, writer: int, meta: Metadata, enough: asyncio.Event) -> None:
        rng = random.Random(writer)
        versions = {
            f"chk-{writer}-{k}-{uuid.uuid4().hex[:6]}": 0 for k in range(STREAMS_PER_WRITER)
        }
        # Keep writing until the kills are over and the quota is met, so kills hit a busy relay.
        while not (enough.is_set() and len(self.appended) >= EVENTS):
            stream = rng.choice(list(versions))
            batch = [TenantRenamed(name=f"{writer}") for _ in range(rng.randint(1, 3))]
            recorded = await self.deps.store.append(
                stream, batch, expected_version=versions[stream], metadata=meta
            )
            versions[stream] += len(batch)
            for rec in recorded:
                self.appended[str(rec.envelope.event_id)] = (stream, rec.envelope.stream_version)
            await asyncio.sleep(rng.random() * 0.01)


async def kill_repeatedly(
    relay: RelayProcess, deps: Deps, sink: Sink, rng: random.Random
) -> tuple[int, int]:
    """Kill the relay mid-batch until KILLS kills are proven mid-batch; return (kills, proven).

    While the relay is down the writers build a backlog of several batches; the restarted relay
    is killed a random moment after its first messages reach the sink. A kill is proven
    mid-batch when a message the sink received is still in the outbox afterwards: the broker
    had it, the relay had not yet deleted it, the dangerous window of R5.
    """
    kills = proven = 0
    while proven < KILLS and kills < KILLS * 4:
        await eventually(functools.partial(_backlog, deps, BACKLOG), within=60)
        seen = len(sink.messages)
        relay.start()
        await eventually(functools.partial(_grew, sink, seen), within=60)
        await asyncio.sleep(rng.uniform(0.0, 0.1))
        relay.kill()
        kills += 1
        await asyncio.sleep(0.3)  # let the broker hand over what it already routed
        proven += await _in_flight(deps, sink)
    relay.start()
    return kills, proven


async def _backlog(deps: Deps, rows: int) -> bool:
    return len(await outbox_rows(deps.engine)) >= rows


async def _in_flight(deps: Deps, sink: Sink) -> bool:
    waiting = {row.position for row in await outbox_rows(deps.engine)}
    return any(m.headers["x-position"] in waiting for m in sink.messages)


async def _grew(sink: Sink, seen: int) -> bool:
    return len(sink.messages) > seen


def check(appended: dict[str, tuple[str, int]], sink: Sink) -> dict[str, int]:
    received = Counter(m.message_id for m in sink.messages)
    lost = set(appended) - set(received)
    unexpected = set(received) - set(appended)
    duplicated = sum(n - 1 for n in received.values())
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in sink.messages:
        if message.message_id in seen or message.message_id not in appended:
            continue
        seen.add(message.message_id)
        stream, version = appended[message.message_id]
        first.setdefault(stream, []).append(version)
    reordered = sum(1 for vs in first.values() if vs != sorted(vs))
    return {
        "appended": len(appended),
        "received": sum(received.values()),
        "lost": len(lost),
        "duplicated": duplicated,
        "unexpected": len(unexpected),
        "reordered_streams": reordered,
    }


Fault = Callable[[RelayProcess, Sink], Awaitable[dict[str, int]]]


async def run_checker(deps: Deps, relay: RelayProcess, fault: Fault) -> dict[str, int]:
    """Write continuously while `fault` runs, drain the outbox, and return the checker report."""
    settings = deps.settings
    writers = Writers(deps)
    faults_done = asyncio.Event()
    async with Sink(settings.amqp.url, settings.amqp.exchange) as sink:
        try:
            metas = [await a_tenant(deps.engine) for _ in range(WRITERS)]
            tasks = [
                asyncio.create_task(writers.run(w, metas[w], faults_done)) for w in range(WRITERS)
            ]
            faults = await fault(relay, sink)
            faults_done.set()
            await asyncio.gather(*tasks)
            await eventually(lambda: _drained(deps), within=180, every=0.2)
            # Give the sink time to receive what the broker confirmed; if something is lost this
            # times out and the report below says how much, instead of failing here.
            with contextlib.suppress(AssertionError):
                await eventually(lambda: _all_received(writers, sink), within=30, every=0.2)
        finally:
            relay.stop()
    return check(writers.appended, sink) | faults


def assert_nothing_lost(
    report: dict[str, int], label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\nR23 {label} checker:", json.dumps(report))
    assert report["lost"] == 0
    assert report["unexpected"] == 0
    assert report["reordered_streams"] == 0
    assert report["appended"] >= EVENTS


async def test_killing_the_relay_mid_batch_loses_nothing(
    deps: Deps, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = RelayProcess(deps.settings, deps.database_url, tmp_path / "relay.log")

    async def kills(relay: RelayProcess, sink: Sink) -> dict[str, int]:
        kills, proven = await kill_repeatedly(relay, deps, sink, random.Random(23))
        return {"kills": kills, "proven_mid_batch": proven}

    report = await run_checker(deps, relay, kills)
    assert_nothing_lost(report, "relay-kill", capsys)
    assert report["proven_mid_batch"] >= KILLS


@pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl of the local broker"
)
async def test_cutting_the_relays_broker_connection_loses_nothing(
    deps: Deps, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The broker side of R5: the connection drops with confirms outstanding, again and again."""
    relay = RelayProcess(deps.settings, deps.database_url, tmp_path / "relay.log")
    rng = random.Random(5)

    async def cuts(relay: RelayProcess, sink: Sink) -> dict[str, int]:
        relay.start()
        assert relay.proc is not None
        name = f"metachat-relay {socket.gethostname()}:{relay.proc.pid}"
        cut = 0
        while cut < KILLS:
            seen = len(sink.messages)
            await eventually(functools.partial(_grew, sink, seen), within=60)
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            cut += await asyncio.to_thread(close_broker_connections, name)
        return {"broker_connection_cuts": cut}

    report = await run_checker(deps, relay, cuts)
    reconnects = (tmp_path / "relay.log").read_text().count("relay_reconnecting")
    assert_nothing_lost(report | {"relay_reconnects": reconnects}, "broker-connection", capsys)
    assert reconnects >= KILLS


async def _drained(deps: Deps) -> bool:
    return await outbox_rows(deps.engine) == []


async def _all_received(writers: Writers, sink: Sink) -> bool:
    return set(writers.appended) <= sink.ids()
