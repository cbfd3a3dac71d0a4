"""The load generator of bench_api.py: a minimal HTTP/1.1 keep-alive client, one process.

Each connection is an asyncio Protocol with at most one request in flight (no pipelining); the
requests are bytes built before the run; a response is read as its status line, its
Content-Length (or a chunked body's last chunk) and that many bytes. Everything is driven by
callbacks: no coroutine, future or header dictionary per request, so one process on uvloop
offers several thousand requests/s for a fraction of a core.

- open loop (`rate`): request i is due at start + i/rate whatever happened before; a due request
  goes to an idle connection or waits in a backlog for the first one to free up. Its latency is
  measured from the time it was due, so a stalled server cannot hide queueing by slowing the
  client down (coordinated omission).
- closed loop (`rate` 0): every connection sends its next request as soon as the last answer
  arrived, for `seconds`; latency from the actual send time.

Run by bench_api.py: reads one JSON job on stdin, waits until its `start_at` (wall clock, so that
several generators start together), prints progress lines starting with two spaces, and writes
its result as JSON to the job's `result_path`: completions, errors by kind, latencies in ms,
achieved rate, its own CPU seconds.
"""

import asyncio
import json
import resource
import sys
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

DRAIN_SECONDS = 60.0
"""After the last request is sent, how long in-flight requests may take before they count as
errors ("unfinished")."""


def request_maker(job: dict[str, Any]) -> Callable[[int], bytes]:
    """Return i -> the bytes of request i (a GET, or a POST spread across `paths`)."""
    host = f"{job['host']}:{job['ports'][0]}"
    auth = f"Authorization: Bearer {job['token']}\r\n" if job.get("token") else ""
    if job["method"] == "GET":
        raw = f"GET {job['path']} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
        return lambda _: raw
    paths: list[str] = job["paths"]
    tag, stride, offset = job["tag"], job["stride"], job["offset"]

    def make(i: int) -> bytes:
        n = i * stride + offset  # unique across the generators of one run
        body = json.dumps({"text": f"message {n} of the benchmark", "external_id": f"{tag}-{n}"})
        return (
            f"POST {paths[n % len(paths)]} HTTP/1.1\r\nHost: {host}\r\n{auth}"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    return make


class Connection(asyncio.Protocol):
    """One keep-alive connection; hands each complete response to its run."""

    def __init__(self, run: "Run") -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need = -1  # length of the whole response once its head is parsed, else -1
        self.chunked = False
        self.status = 0
        self.due = 0.0  # what this request's latency is measured from
        self.busy = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport, but has its methods.
        self.transport = cast("asyncio.Transport", transport)

    def send(self, request: bytes, due: float) -> None:
        if self.transport is None:
            raise RuntimeError("send before connect")
        self.due, self.busy = due, True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.need < 0 and not self._parse_head():
            return
        if self.chunked:
            end = self.buffer.find(b"\r\n0\r\n\r\n", self.need - 2)
            if end < 0:
                return
            self.need = end + 7
        if len(self.buffer) < self.need:
            return
        del self.buffer[: self.need]
        self.need, self.busy = -1, False
        self.run.completed(self, self.status)

    def _parse_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).lower()
        self.status = int(head[9:12])
        self.keep_alive = b"\r\nconnection: close" not in head
        self.chunked = b"\r\ntransfer-encoding: chunked" in head
        at = head.find(b"\r\ncontent-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        self.need = end + 4 + length
        return True

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - counted as lost
        self.transport = None
        self.run.lost(self)


class Run:
    """One open- or closed-loop run over a set of connections."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.make = request_maker(job)
        self.rate = float(job["rate"])
        self.seconds = float(job["seconds"])
        self.total = int(self.rate * self.seconds) if self.rate else 0
        self.prebuilt = [self.make(i) for i in range(self.total)]
        self.idle: deque[Connection] = deque()
        self.backlog: deque[tuple[int, float]] = deque()
        self.latencies = array("d")
        self.errors: Counter[str] = Counter()
        self.sent = self.done = self.in_flight = self.done_in_window = self.opened = 0
        self.start = self.deadline = 0.0
        self.sending = True
        self.finished = asyncio.Event()
        self.replacing: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def connect(self) -> Connection:
        """Open one more connection, to the servers' ports in turn."""
        ports = self.job["ports"]
        port, self.opened = ports[self.opened % len(ports)], self.opened + 1
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Connection(self), self.job["host"], port)
        return conn

    def request(self, slot: int) -> bytes:
        return self.prebuilt[slot] if slot < self.total else self.make(slot)

    def dispatch(self, slot: int, due: float) -> None:
        """Send request `slot` now on an idle connection, or queue it for the next free one."""
        self.sent += 1
        if self.idle:
            self.in_flight += 1
            self.idle.popleft().send(self.request(slot), due)
        else:
            self.backlog.append((slot, due))

    def completed(self, conn: Connection, status: int) -> None:
        now = time.perf_counter()
        self.in_flight -= 1
        self.done += 1
        if now <= self.deadline:
            self.done_in_window += 1
        if 200 <= status < 300:
            self.latencies.append((now - conn.due) * 1000)
        else:
            self.errors[f"status_{status}"] += 1
        if not conn.keep_alive and conn.transport is not None:
            conn.transport.close()  # connection_lost replaces it
            return
        self.next_for(conn)

    def next_for(self, conn: Connection) -> None:
        if self.backlog:
            slot, due = self.backlog.popleft()
            self.in_flight += 1
            conn.send(self.request(slot), due)
        elif not self.rate and self.sending:
            self.sent += 1
            self.in_flight += 1
            conn.send(self.make(self.sent - 1), time.perf_counter())
        else:
            self.idle.append(conn)
        self.check_finished()

    def lost(self, conn: Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            conn.busy = False
            self.in_flight -= 1
            self.done += 1
            self.errors["connection_lost"] += 1
        if self.sending or self.backlog:
            task = asyncio.get_running_loop().create_task(self.replace())
            self.replacing.add(task)
            task.add_done_callback(self.replacing.discard)
        self.check_finished()

    async def replace(self) -> None:
        while self.sending or self.backlog:
            try:
                self.next_for(await self.connect())
            except OSError:
                self.errors["connect_failed"] += 1
                await asyncio.sleep(0.1)
            else:
                return

    def check_finished(self) -> None:
        if not self.sending and not self.backlog and self.in_flight == 0:
            self.finished.set()

    async def offer(self) -> None:
        """Open loop: request i is due at start + i/rate."""
        slot, rate = 0, self.rate
        while slot < self.total:
            due = min(self.total, int((time.perf_counter() - self.start) * rate) + 1)
            while slot < due:
                self.dispatch(slot, self.start + slot / rate)
                slot += 1
            await asyncio.sleep(max(0.0, self.start + slot / rate - time.perf_counter()))

    async def saturate(self) -> None:
        """Closed loop: every idle connection sends at once, then again at each answer."""
        while self.idle:
            self.next_for(self.idle.popleft())
        await asyncio.sleep(max(0.0, self.deadline - time.perf_counter()))

    async def progress(self) -> None:
        label = self.job["label"]
        while not self.finished.is_set():
            await asyncio.sleep(1.0)
            errors = sum(self.errors.values())
            print(
                f"  {label}: {self.done:>7} answered, {self.in_flight:>4} in flight, "
                f"{len(self.backlog):>5} waiting, {errors} errors",
                flush=True,
            )

    async def execute(self) -> dict[str, Any]:
        conns = await asyncio.gather(*(self.connect() for _ in range(self.job["clients"])))
        self.idle.extend(conns)
        await asyncio.sleep(max(0.0, self.job["start_at"] - time.time()))
        cpu_before = cpu_seconds()
        self.start = time.perf_counter()
        self.deadline = self.start + self.seconds
        reporter = asyncio.create_task(self.progress())
        await (self.offer() if self.rate else self.saturate())
        self.sending = False
        sent_all = time.perf_counter()
        self.check_finished()
        try:
            await asyncio.wait_for(self.finished.wait(), DRAIN_SECONDS)
        except TimeoutError:
            self.errors["unfinished"] += self.in_flight + len(self.backlog)
        elapsed = time.perf_counter() - self.start
        self.finished.set()
        await reporter
        cpu = cpu_seconds() - cpu_before
        for conn in (*conns, *self.idle):
            if conn.transport is not None:
                conn.transport.close()
        return {
            "answered": self.done,
            "elapsed_s": elapsed,
            "send_s": sent_all - self.start,
            # Open loop: what was served over the whole run; closed: answers within the window.
            "achieved_per_s": self.done / elapsed
            if self.rate
            else self.done_in_window / self.seconds,
            "errors": dict(self.errors),
            "cpu_s": cpu,
            "latencies_ms": [round(v, 3) for v in self.latencies],
        }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    job = json.loads(sys.stdin.read())
    try:
        import uvloop
    except ImportError:  # a slower loop still measures correctly, with more client CPU
        factory = None
    else:
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(Run(job).execute())
    Path(job["result_path"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
