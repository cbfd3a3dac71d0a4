"""Instructions per request, counted by callgrind: a deterministic cost of a post (no timing).

Wall-clock and CPU-time figures on these shared two cores move by ±50 % between runs (whatever
else the host runs); instruction counts do not. This runs the API role and the bare insert
server under `valgrind --tool=callgrind` with counting off, warms them up, then counts only
while a fixed sequence of requests is answered one at a time, and prints instructions per
request: the message post beside `/health/live` and the bare one-insert endpoint.

    uv run --frozen python scripts/bench_api_instructions.py --requests 300

Everything the server process does meanwhile is counted (the event loop, the notifier, the
key cache's listener): the cost of a request to the process that serves it. PostgreSQL is not
under callgrind; its share is the database server's CPU in bench_api.py. Needs valgrind.
"""

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from bench_api_setup import (  # scripts/ is on sys.path
    BENCH_DIR,
    SCRIPTS,
    TAG,
    Server,
    free_port,
    fresh_database,
    migrate_with_tenant,
    open_conversations,
    say,
    server_env,
)
from bench_callgrind import start_counting, stop_counting, under_callgrind


def expect(answer: httpx.Response, status: int) -> None:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")


def counted(server: Server, out: Path, send: Callable[[], None], requests: int) -> float:
    """Instructions per request of `server` while `send` is called `requests` times."""
    start_counting(server.proc.pid, out)
    for _ in range(requests):
        send()
    return stop_counting(server.proc.pid, out) / requests


async def main(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url, admin_url, name = fresh_database()
    servers: list[Server] = []
    try:
        env = server_env(url)
        issued = migrate_with_tenant(env, url)
        api_out, bare_out = BENCH_DIR / f"cg-api-{TAG}", BENCH_DIR / f"cg-bare-{TAG}"
        port, bare_port = free_port(), free_port()
        api = Server(
            "api",
            under_callgrind(
                api_out,
                [
                    sys.executable,
                    "-m",
                    "metachat",
                    "run",
                    "--role",
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
            ),
            env,
            port,
        )
        servers.append(api)
        bare = Server(
            "bare",
            under_callgrind(
                bare_out,
                [sys.executable, str(SCRIPTS / "bench_api_bare.py"), "--port", str(bare_port)],
            ),
            env,
            bare_port,
        )
        servers.append(bare)
        say("starting both servers under callgrind (slow)")
        api.wait_live("/health/live", timeout=900)
        bare.wait_live("/insert", timeout=900)
        conversations = await open_conversations(port, issued["api_key"], args.conversations)
        auth = {"Authorization": f"Bearer {issued['api_key']}"}
        n = 0
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=120) as c,
            httpx.Client(base_url=f"http://127.0.0.1:{bare_port}", timeout=120) as b,
        ):

            def post() -> None:
                nonlocal n
                n += 1
                body = {"text": f"message {n} of the benchmark", "external_id": f"{TAG}-{n}"}
                answer = c.post(
                    f"/v1/conversations/{conversations[n % len(conversations)]}/messages", json=body
                )
                expect(answer, 201)

            def live() -> None:
                expect(c.get("/health/live"), 200)

            def insert() -> None:
                nonlocal n
                n += 1
                body = {"text": f"message {n} of the benchmark", "external_id": f"{TAG}-{n}"}
                expect(b.post("/insert", json=body), 201)

            for _ in range(args.warmup):
                post()
                insert()
                live()
            say("warmed up; counting")
            figures = {
                "post message": counted(api, api_out, post, args.requests),
                "/health/live": counted(api, api_out, live, args.requests),
                "bare insert": counted(bare, bare_out, insert, args.requests),
            }
        for label, per in figures.items():
            print(f"  {label:16} {per / 1e6:8.3f} M instructions/request")
        print(json.dumps({"bench": "api_instructions", "requests": args.requests, **figures}))
    finally:
        for server in servers:
            server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--conversations", type=int, default=100)
    asyncio.run(main(parser.parse_known_args()[0]))
