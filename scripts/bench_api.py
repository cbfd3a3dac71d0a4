"""API benchmark: posting customer messages with many concurrent clients (issue 3).

The server under test is the product started the way an operator starts it,
`python -m metachat run --role api` (METACHAT_ENV=production, JSON logs at INFO, the rate limit
raised out of the way), on a database made for this run and migrated with `metachat db upgrade`;
the tenant and its API key come from `metachat tenants create`. Beside it, in the same run:
- its trivial endpoint, `GET /health/live` (HTTP + Litestar + middleware, no database);
- a bare Litestar endpoint doing one INSERT transaction per request (bench_api_bare.py), on the
  same database server, uvicorn options and event loop, in its own process.

A few hundred conversations are opened first; the posts go to them round-robin, each with a
unique external_id. The load comes from bench_api_load.py (raw HTTP/1.1 keep-alive connections
on uvloop, in its own process):
1. open loop: `--api-rate` requests/s for `--api-seconds` to each of the three endpoints, latency
   from each request's scheduled send time (no coordinated omission);
2. closed loop (saturation): `--clients` connections as fast as they are answered, for
   `--saturation-seconds`, giving the most requests/s each endpoint serves.
Each figure is printed beside its two ceilings, with the CPU each side spent per request (from
/proc: server, PostgreSQL, generator, the rest of the machine). Errors (non-2xx, lost
connections, unfinished requests) are counted; the target is p99 < 25 ms at 1,000 messages/s
with none. The last line is one JSON object. The database is dropped at the end.

    uv run --frozen python scripts/bench_api.py --api-rate 1000 --api-seconds 10
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from bench_api_cpu import breakdown, finish_profile, postmaster_pid, snapshot, start_profile
from bench_api_setup import (  # scripts/ is on sys.path
    BENCH_DIR,
    SCRIPTS,
    TAG,
    Server,
    fresh_database,
    migrate_with_tenant,
    open_conversations,
    say,
    server_env,
    start_servers,
)

TARGET_P99_MS = 25.0
# Counted when a session starts (other counters of pg_stat_database lag up to 10 s behind).
_SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"


def emit(figures: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(figures), flush=True)
    return figures


def read_result(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return result


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else float("nan")


class Bench:
    """The targets of one run and how to load them."""

    def __init__(
        self,
        args: argparse.Namespace,
        servers: tuple[list[Server], Server],
        stats: psycopg.AsyncConnection[Any],
        postmaster: int | None,
    ) -> None:
        self.args, (self.apis, self.bare) = args, servers
        self.stats, self.postmaster = stats, postmaster
        self.targets: dict[str, dict[str, Any]] = {}

    async def sessions(self) -> int:
        """Database sessions opened in this run's database so far (by the pools, mostly)."""
        row = await (await self.stats.execute(_SESSIONS)).fetchone()
        return int(row[0]) if row else 0

    def define(self, api_key: str, conversations: list[str]) -> None:
        paths = [f"/v1/conversations/{c}/messages" for c in conversations]
        self.targets = {
            "posts": {"servers": self.apis, "method": "POST", "paths": paths, "token": api_key},
            "live": {"servers": self.apis, "method": "GET", "path": "/health/live"},
            "bare": {"servers": [self.bare], "method": "POST", "paths": ["/insert"]},
        }

    async def load(
        self, name: str, label: str, *, rate: float, seconds: float, profile: bool = False
    ) -> dict[str, Any]:
        """Run the generators against one target; return the merged figures.

        With `profile`, py-spy samples the first server process meanwhile.
        """
        target, count = self.targets[name], self.args.generators
        servers: list[Server] = target["servers"]
        pids = [s.proc.pid for s in servers]
        start_at = time.time() + 1.0 + 0.2 * count
        procs = []
        for index in range(count):
            job = {k: v for k, v in target.items() if k != "servers"} | {
                "host": "127.0.0.1",
                "ports": [s.port for s in servers],
                "rate": rate / count,
                "seconds": seconds,
                "clients": max(1, self.args.clients // count),
                "start_at": start_at,
                "tag": f"{TAG}-{label.replace(' ', '-')}",
                "stride": count,
                "offset": index,
                "label": label,
                "result_path": str(BENCH_DIR / f"load-{TAG}-{index}.json"),
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SCRIPTS / "bench_api_load.py"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            if proc.stdin is None:
                raise RuntimeError("generator started without stdin")
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
            procs.append(proc)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        sessions = await self.sessions()
        before = snapshot(time.perf_counter(), pids, self.postmaster)
        spy = (
            await start_profile(pids[0], seconds, BENCH_DIR / f"profile-{TAG}.txt")
            if profile
            else None
        )
        try:
            results = await asyncio.gather(*(self._collect(p, i) for i, p in enumerate(procs)))
        except BaseException:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
            raise
        after = snapshot(time.perf_counter(), pids, self.postmaster)
        answered, generator_cpu = (sum(r[k] for r in results) for k in ("answered", "cpu_s"))
        figures = breakdown(before, after, answered, generator_cpu)
        figures["db_sessions_opened"] = await self.sessions() - sessions
        if spy is not None:
            figures["profile"] = await finish_profile(spy)
        return self._merge(results, rate, figures)

    async def _collect(self, proc: asyncio.subprocess.Process, index: int) -> dict[str, Any]:
        """Echo the first generator's progress; return a generator's result."""
        if proc.stdout is None:
            raise RuntimeError("generator started without stdout")
        async for raw in proc.stdout:
            if index == 0 and (line := raw.decode().rstrip()):
                print(line, flush=True)
        if await proc.wait() != 0:
            raise RuntimeError(f"a load generator failed (exit code {proc.returncode})")
        return read_result(BENCH_DIR / f"load-{TAG}-{index}.json")

    def _merge(
        self, results: list[dict[str, Any]], rate: float, cpu: dict[str, Any]
    ) -> dict[str, Any]:
        latencies = sorted(v for r in results for v in r["latencies_ms"])
        errors: Counter[str] = Counter()
        for r in results:
            errors.update(r["errors"])
        return {
            "offered_per_s": rate or None,
            "achieved_per_s": round(sum(r["achieved_per_s"] for r in results), 1),
            "answered": sum(r["answered"] for r in results),
            "p50_ms": round(percentile(latencies, 0.50), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(latencies[-1], 2) if latencies else None,
            "errors": sum(errors.values()),
            "errors_by_kind": dict(errors),
            "generator_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
            **cpu,
        }


LABELS = {"posts": "post message", "live": "/health/live", "bare": "bare insert"}


def show(label: str, fig: dict[str, Any]) -> None:
    pg = fig["postgres_cpu_ms_per_req"]
    print(
        f"  {label:<22} {fig['achieved_per_s']:>7.0f}/s  p50 {fig['p50_ms']:>8.2f} ms  "
        f"p99 {fig['p99_ms']:>8.2f} ms  max {fig['max_ms'] or 0:>8.1f} ms  "
        f"errors {fig['errors']}{' ' + str(fig['errors_by_kind']) if fig['errors'] else ''}\n"
        f"  {'':<22} CPU ms/request: server {fig['server_cpu_ms_per_req']:.2f}, "
        f"postgres {'?' if pg is None else f'{pg:.2f}'}, "
        f"generator {fig['generator_cpu_ms_per_req']:.2f}, "
        f"rest of machine {fig['other_cpu_ms_per_req']:.2f} ({fig['machine_busy']:.0%} of "
        f"{os.cpu_count()} cores busy); {fig['db_sessions_opened']} database sessions opened",
        flush=True,
    )


async def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    order = ("live", "bare", "posts")
    rate, seconds, clients = args.api_rate, args.api_seconds, args.clients
    print(f"warm-up: {args.warmup_seconds:g} s closed loop on each endpoint", flush=True)
    for name in order:
        await bench.load(name, f"warm-up {name}", rate=0, seconds=args.warmup_seconds)
    print(f"(1) open loop: {rate:g} requests/s for {seconds:g} s to each endpoint", flush=True)
    open_loop = {n: await bench.load(n, f"open {n}", rate=rate, seconds=seconds) for n in order}
    print(f"(2) saturation: {clients} clients, closed loop, {args.saturation_seconds:g} s each")
    saturation = {
        n: await bench.load(
            n,
            f"saturate {n}",
            rate=0,
            seconds=args.saturation_seconds,
            profile=args.profile and n == "posts",
        )
        for n in order
    }
    most = saturation["posts"]["achieved_per_s"]
    print(f"(3) posts, open loop at {args.fractions} of their saturation rate ({most:.0f}/s)")
    fractions = {
        f"{f:g}": await bench.load("posts", f"open posts x{f:g}", rate=f * most, seconds=seconds)
        for f in args.fractions
        if most > 0
    }
    posts = open_loop["posts"]
    met = posts["p99_ms"] < TARGET_P99_MS and posts["errors"] == 0
    met = met and posts["achieved_per_s"] >= 0.98 * rate
    print(f"\nopen loop at {rate:g}/s, latency from each request's scheduled send time:")
    for name in ("posts", "live", "bare"):
        show(LABELS[name], open_loop[name])
    print(f"saturation, {clients} clients, latency from the actual send time:")
    for name in ("posts", "live", "bare"):
        show(LABELS[name], saturation[name])
    print("post message, open loop below saturation:")
    for fraction, fig in fractions.items():
        show(f"at {fraction} x {most:.0f}/s", fig)
    print(
        f"target p99 < {TARGET_P99_MS:g} ms with 0 errors at {rate:g} messages/s: "
        f"{'met' if met else 'MISSED'} (served {posts['achieved_per_s']:.0f}/s, "
        f"p99 {posts['p99_ms']} ms, {posts['errors']} errors); saturation {most:.0f} posts/s "
        f"beside bare insert {saturation['bare']['achieved_per_s']:.0f}/s and /health/live "
        f"{saturation['live']['achieved_per_s']:.0f}/s",
        flush=True,
    )
    return {
        "open_loop": open_loop,
        "saturation": saturation,
        "posts_below_saturation": fractions,
        "target_met": met,
    }


async def main(args: argparse.Namespace) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, when piped
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url, admin_url, name = fresh_database()
    servers: list[Server] = []
    ok = False
    try:
        env = server_env(url)
        issued = migrate_with_tenant(env, url)
        with psycopg.connect(url, autocommit=True) as conn:
            data_directory = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        say(f"database {name} migrated; tenant {issued['tenant_id']} with one API key")
        apis, bare = start_servers(env, args, servers)
        stats = await psycopg.AsyncConnection.connect(url, autocommit=True)
        bench = Bench(args, (apis, bare), stats, postmaster_pid(data_directory))
        conversations = await open_conversations(
            apis[0].port, issued["api_key"], args.conversations
        )
        bench.define(issued["api_key"], conversations)
        try:
            figures = await measure(bench, args)
        finally:
            await stats.close()
        for server in servers:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited during the run:\n{server.tail()}")
        emit(
            {
                "bench": "api",
                "rate": args.api_rate,
                "seconds": args.api_seconds,
                "clients": args.clients,
                "generators": args.generators,
                "api_processes": args.api_processes,
                "conversations": args.conversations,
                "uvloop": args.uvloop,
                "target_p99_ms": TARGET_P99_MS,
                **figures,
            }
        )
        ok = True
    finally:
        for server in servers:
            server.stop()
            if ok:
                server.log.unlink(missing_ok=True)
            else:
                print(f"{server.name} log kept at {server.log}", file=sys.stderr)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # another script's option must never pass for an abbreviation
    )
    parser.add_argument(
        "--api-rate", type=float, default=1000, help="offered requests/s, open loop"
    )
    parser.add_argument(
        "--api-seconds", type=float, default=10.0, help="duration of each open-loop run"
    )
    parser.add_argument("--clients", type=int, default=100, help="concurrent connections")
    parser.add_argument(
        "--saturation-seconds", type=float, default=5.0, help="duration of each closed-loop run"
    )
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="closed loop, unreported")
    parser.add_argument(
        "--conversations", type=int, default=500, help="conversations the posts are spread over"
    )
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes on one port (metachat run --api-workers)",
    )
    parser.add_argument(
        "--fractions",
        type=lambda raw: [float(f) for f in raw.split(",") if f],
        default=[0.5, 0.8],
        help="open-loop post runs at these fractions of the posts' saturation rate",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="force uvloop through a wrapper (both servers already run on it where installed)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the API process with py-spy while posts saturate it (uv tool install py-spy)",
    )
    # scripts/bench hands the same arguments to every benchmark: ignore the others' options.
    return parser.parse_known_args(argv)[0]


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
