"""R7 under crashes: SIGKILL the consumers process at random points while it applies duplicates.

Every round publishes every event twice (in random order) and kills the process at a random
moment, often between an effect's commit and its ack. At the end the read model must equal one
clean replay. Rounds: MC_CONSUMER_KILLS (default 3), or 100 with MC_SOAK=1.
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from metachat.analytics import ACTIVITY_CONSUMER
from metachat.settings import Settings
from tests.conftest import REPO
from tests.integration.consumers.support import (
    Harness,
    daily_activity,
    make_history,
    tracked,
)
from tests.integration.consumers.test_idempotency import clean_replay
from tests.waiting import eventually

ROUNDS = 100 if os.environ.get("MC_SOAK") == "1" else int(os.environ.get("MC_CONSUMER_KILLS", "3"))

# Each round starts a Python process (a few seconds on these machines); the bound scales with it.
pytestmark = pytest.mark.timeout(120 + ROUNDS * 15)


class ConsumerProcess:
    """`run_consumers` with the registered consumers, as a real OS process."""

    def __init__(self, settings: Settings, database_url: str, log_path: Path) -> None:
        assert settings.secret_key is not None
        assert settings.api_key_pepper is not None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")}
        self.env |= {
            "METACHAT_ENV": "test",
            "METACHAT_DATABASE_URL": database_url,
            "METACHAT_DATA_DIR": str(settings.data_dir),
            "METACHAT_SECRET_KEY": settings.secret_key.value,
            "METACHAT_API_KEY_PEPPER": settings.api_key_pepper.value,
            "METACHAT_AMQP_URL": settings.amqp.url,
            "METACHAT_AMQP__EXCHANGE": settings.amqp.exchange,
            "METACHAT_AMQP__QUEUE_PREFIX": settings.amqp.queue_prefix,
            "METACHAT_CONSUMER__PREFETCH": "16",
            "METACHAT_LOG_JSON": "true",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.consumers.consumer_proc"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        await eventually(self._started, within=60)

    async def _started(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"consumers died at start, see {self.log_path}"
        return self.log_path.read_text().count('"consumers_started"') >= self.starts

    def kill(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"consumers died on their own, see {self.log_path}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


async def test_sigkill_at_random_points_equals_clean_replay(
    harness: Harness, tmp_path: Path
) -> None:
    events = await make_history(harness.deps, tenants=4, renames=10)
    envelopes = [r.envelope for r in events]
    harness.consumers.add(ACTIVITY_CONSUMER.name)
    queue = harness.queue(ACTIVITY_CONSUMER.name)
    process = ConsumerProcess(
        harness.settings, harness.deps.database_url, tmp_path / "consumers.log"
    )
    rng = random.Random(int(os.environ.get("MC_SEED", "20261126")))
    interrupted = 0
    try:
        for _ in range(ROUNDS):
            await process.start()
            await harness.publish(rng.sample(envelopes, len(envelopes)) * 2)
            await asyncio.sleep(rng.random() * 0.3)  # picks the kill point; nothing is timed
            process.kill()
            interrupted += (await harness.depth(queue) or 0) > 0
        await process.start()

        async def settled() -> bool:
            return (
                await tracked(harness.deps.engine, ACTIVITY_CONSUMER.name) == len(events)
                and await harness.depth(queue) == 0
            )

        await eventually(settled, within=120)
    finally:
        process.stop()
    print(f"\nR7 kill test: {ROUNDS} SIGKILLs, {interrupted} with messages still queued")
    assert await harness.depth(queue) == 0  # the clean stop acked everything in flight
    assert await harness.depth(harness.dlq(ACTIVITY_CONSUMER.name)) == 0
    assert await tracked(harness.deps.engine, ACTIVITY_CONSUMER.name) == len(events)
    assert await daily_activity(harness.deps.engine) == await clean_replay(harness)
