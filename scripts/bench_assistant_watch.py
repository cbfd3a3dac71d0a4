"""Where the time goes during a bench_assistant.py run: CPU per process, the database's sessions
(what they were doing, sampled), transaction counters, and py-spy on the consumers process."""

import asyncio
import contextlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from bench_api_cpu import machine_busy_seconds as busy_seconds
from bench_api_cpu import (
    machine_steal_seconds,
    process_seconds,
    py_spy,
    summarize_profile,
    tree_seconds,
)
from bench_api_setup import say
from bench_assistant_report import Observed

_COUNTERS = (
    "SELECT xact_commit, xact_rollback, sessions FROM pg_stat_database "
    "WHERE datname = current_database()"
)
_ACTIVITY = """
SELECT coalesce(nullif(application_name, ''), '?'), coalesce(state, '?'),
       coalesce(wait_event_type, '-'), coalesce(wait_event, '-'), count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
GROUP BY 1, 2, 3, 4
"""


def beam_pids() -> list[int]:
    """RabbitMQ's Erlang VM, when it runs on this machine (its CPU is shown apart)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "beam.smp":
                found.append(int(entry.name))
    return found[:1]


def cpu(pids: dict[str, int], postmaster: int | None) -> dict[str, float]:
    """CPU seconds so far of each named process, of PostgreSQL and of the whole machine."""
    seconds = {name: process_seconds(pid) for name, pid in pids.items()}
    seconds["postgres"] = tree_seconds(postmaster) if postmaster else 0.0
    seconds["steal"] = machine_steal_seconds()
    seconds["machine"], seconds["at"] = busy_seconds(), time.perf_counter()
    return seconds


def cpu_per_message(
    before: dict[str, float], after: dict[str, float], n: int, writer: float
) -> dict[str, Any]:
    """CPU ms per customer message of each process; `writer` is what the writer reported."""
    spent = {k: after[k] - before[k] for k in before if k not in {"at", "machine"}}
    spent["writer"] = writer
    machine = after["machine"] - before["machine"]
    spent["rest of machine"] = max(0.0, machine - sum(spent.values()))
    shown = {f"{k}_cpu_ms_per_message": round(v * 1000 / max(1, n), 3) for k, v in spent.items()}
    wall = max(1e-9, after["at"] - before["at"])
    return shown | {"machine_busy": round(machine / (wall * (os.cpu_count() or 1)), 3)}


async def counters(url: str) -> tuple[int, int, int]:
    """Transactions committed and rolled back, and sessions opened, in the database so far."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(_COUNTERS)).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


class Sessions:
    """Samples what the database's client sessions are doing, every `every` seconds."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        self.url, self.every = url, every
        self.samples = 0
        self.totals: Counter[str] = Counter()
        self.peaks: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        """Stop sampling; return mean and peak sessions per kind (state, or what they wait on)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        n = max(1, self.samples)
        kinds = sorted(self.totals, key=lambda k: (k.split(":")[0], -self.totals[k]))
        return {k: {"mean": round(self.totals[k] / n, 1), "peak": self.peaks[k]} for k in kinds}

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = await (await conn.execute(_ACTIVITY)).fetchall()
                sample: Counter[str] = Counter()
                for app, state, wait_type, wait, count in rows:
                    sample[f"{app}: sessions"] += count
                    waiting = wait_type not in {"-", "Client"} and state != "idle"
                    kind = f"{state}, waiting on {wait_type}:{wait}" if waiting else state
                    sample[f"{app}: {kind}"] += count
                self.samples += 1
                self.totals.update(sample)
                for kind, count in sample.items():
                    self.peaks[kind] = max(self.peaks[kind], count)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self.every)


def show_sessions(sessions: dict[str, Any]) -> None:
    print("  database sessions while posting (sampled every 0.25 s), mean / peak:")
    for kind, seen in sessions.items():
        print(f"    {seen['mean']:6.1f} / {seen['peak']:>3}  {kind}")


_BUCKETS = (
    ("logging (structlog, FastStream's access lines)", ("(logging/", "(structlog/")),
    ("reply policy (orchestrator.replies)", ("(metachat/orchestrator/",)),
    ("activity consumer (analytics.activity)", ("(metachat/analytics/",)),
    ("consumer runner (decode, tracking rows)", ("(metachat/eventstore/consumer.py",)),
    ("broker client (FastStream, aio-pika, aiormq)", ("(faststream/", "(fast_depends/", "(aio")),
    ("database driver, caller cut off (SQLAlchemy greenlets)", ("(psycopg/", "(sqlalchemy/")),
)


def buckets(raw: str) -> dict[str, float]:
    """Share of samples by the first matching kind of frame anywhere in the stack."""
    shares: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        kind = next((k for k, marks in _BUCKETS if any(m in stack for m in marks)), None)
        shares[kind or "event loop and the rest"] += int(count)
    return {k: round(v / max(1, total), 3) for k, v in shares.most_common()}


async def profile(pid: int, seconds: float, out: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """Start py-spy sampling the consumers process for about `seconds`."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("--assistant-profile needs py-spy: uv tool install py-spy")
    command = [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds)))]
    command += ["-r", "100", "--nonblocking", "-f", "raw", "-o", str(out)]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return proc, out


async def finish(spy: tuple[asyncio.subprocess.Process, Path]) -> dict[str, Any]:
    """Wait for py-spy; print and return its summary (its raw output stays in .metachat/bench)."""
    await spy[0].wait()
    raw = spy[1].read_text() if spy[1].exists() else ""
    summary: dict[str, Any] = summarize_profile(raw, top=16)
    summary["by_kind"] = buckets(raw)
    print(f"  py-spy's raw samples (`frame;frame;... count` per stack): {spy[1]}")
    print("  share of the consumers process's samples by what the stack is doing:")
    for kind, share in summary["by_kind"].items():
        print(f"    {share:6.1%}  {kind}")
    print("  py-spy, share of the consumers process's samples by package of the innermost frame:")
    print("    " + ", ".join(f"{k} {v:.0%}" for k, v in summary["by_package"].items()))
    print("  and under each of the platform's functions (the driver's greenlets cut stacks):")
    for function, share in summary["under_function"].items():
        print(f"    {share:6.1%}  {function}")
    return summary


async def drain(
    obs: Observed, writer: asyncio.subprocess.Process, limit: float, consumers: int
) -> None:
    """Print progress (with the CPU share of the consumers process and of the machine in the
    last second) until the writer is done and every message is answered, or `limit` s
    passed since the writer ended."""
    ended: float | None = None
    last = (time.perf_counter(), process_seconds(consumers), busy_seconds())
    while True:
        await asyncio.sleep(1.0)
        now = (time.perf_counter(), process_seconds(consumers), busy_seconds())
        wall = max(1e-9, now[0] - last[0])
        shares = (now[1] - last[1]) / wall, (now[2] - last[2]) / wall / (os.cpu_count() or 1)
        last = now
        answered = sum(1 for m in obs.committed if m in obs.answered)
        say(
            f"committed {len(obs.committed):>6}, on the broker {len(obs.customer):>6}, "
            f"replies {len(obs.replies):>6}, messages answered {answered:>6}; consumers "
            f"process {shares[0]:4.0%} of a core, machine {shares[1]:4.0%}"
        )
        if writer.returncode is not None:
            ended = ended or time.monotonic()
            if answered == len(obs.committed) or time.monotonic() - ended > limit:
                return
