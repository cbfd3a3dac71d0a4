"""Set-up of bench_api.py: its database, the servers under test and the conversations.

Everything here is what an operator would do: a database migrated with `metachat db upgrade`, a
tenant and key from `metachat tenants create`, the API role started with `metachat run --role
api` (as `python -m metachat`), in production mode with every secret given.
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from metachat.database.embedded import ensure_database, start_embedded
from metachat.database.engine import sqlalchemy_url

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
TAG = uuid.uuid4().hex[:8]
BENCH_DIR = ROOT / ".metachat" / "bench"
UVLOOP_WRAPPER = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "sys.argv[0] = 'metachat'; from metachat.cli.main import main; main()"
)


def say(line: str) -> None:
    print(f"  {line}", flush=True)


def fresh_database() -> tuple[str, str, str]:
    """Create this run's (empty) database; return (its URL, an admin URL, its name)."""
    name, given = f"metachat_bench_api_{TAG}", os.environ.get("METACHAT_DATABASE_URL")
    if not given:
        given = start_embedded(BENCH_DIR, database=name)
    admin = sqlalchemy_url(given).set(database="postgres", drivername="postgresql")
    admin_url = admin.render_as_string(hide_password=False)
    ensure_database(admin_url, name)
    return admin.set(database=name).render_as_string(hide_password=False), admin_url, name


def server_env(url: str) -> dict[str, str]:
    """A production configuration: every secret given, JSON logs at INFO; no limit in the way."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")}
    return env | {
        "METACHAT_ENV": "production",
        "METACHAT_DATABASE_URL": url,
        "METACHAT_AMQP_URL": os.environ.get(
            "METACHAT_AMQP_URL", "amqp://guest:guest@localhost:5672/"
        ),
        "METACHAT_SECRET_KEY": secrets.token_urlsafe(32),
        "METACHAT_API_KEY_PEPPER": secrets.token_urlsafe(32),
        "METACHAT_DATA_DIR": str(BENCH_DIR),
        "METACHAT_LOG_LEVEL": "INFO",
        "METACHAT_RATE_LIMIT__RATE": "1000000",
        "METACHAT_RATE_LIMIT__BURST": "1000000",
    }


def cli(env: dict[str, str], *args: str) -> str:
    """Run a `metachat` command as an operator would; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "metachat", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"metachat {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def migrate_with_tenant(env: dict[str, str], url: str) -> dict[str, str]:
    """Migrate the run's database, create its tenant and the bare server's scratch table.

    Returns what `metachat tenants create` printed (the tenant id and its API key).
    """
    cli(env, "db", "upgrade")
    issued: dict[str, str] = json.loads(cli(env, "tenants", "create", f"bench-{TAG}"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_bare (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
    return issued


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server process under test, its port and its log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.log = BENCH_DIR / f"{name}-{TAG}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_live(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=1.0).status_code < 500:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_servers(
    env: dict[str, str], args: argparse.Namespace, started: list[Server]
) -> tuple[list[Server], Server]:
    """Start the API role (`--api-processes` of them, on one port) and the bare insert server.

    More than one API process is the product's own `--api-workers`: the first process starts
    the others, all listening on the same port. Each server is added to `started` as soon as it
    runs, for the caller to stop.
    """
    runner = ["-c", UVLOOP_WRAPPER] if args.uvloop else ["-m", "metachat"]
    port = free_port()
    command = [sys.executable, *runner, "run", "--role", "api"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    command += ["--api-workers", str(args.api_processes)]
    apis = [Server("api", command, env, port)]
    started.append(apis[0])
    bare_port = free_port()
    bare_cmd = [sys.executable, str(SCRIPTS / "bench_api_bare.py"), "--port", str(bare_port)]
    bare_cmd += ["--uvloop"] if args.uvloop else []
    bare = Server("bare", bare_cmd, env, bare_port)
    started.append(bare)
    for api in apis:
        api.wait_live("/health/live")
    bare.wait_live("/insert")  # a GET is answered 405 once the app serves
    shown = ", ".join(f"port {a.port} (pid {a.proc.pid})" for a in apis)
    say(f"api role on {shown}; bare insert on port {bare.port} (pid {bare.proc.pid})")
    return apis, bare


async def open_conversations(port: int, api_key: str, count: int) -> list[str]:
    """Open `count` conversations through the API (set-up, not measured)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:

        async def one(n: int) -> None:
            body = {"channel": "api", "customer_id": f"customer-{n}", "metadata": {}}
            answer = await client.post("/v1/conversations", json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"opening a conversation: {answer.status_code} {answer.text}")
            ids.append(answer.json()["id"])

        for start in range(0, count, 50):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))
    say(f"opened {len(ids)} conversations")
    return ids
