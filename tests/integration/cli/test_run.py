"""`metachat run`: roles in one process, clean stop on SIGTERM/SIGINT, non-zero exit on a crash."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from metachat.eventstore.consumer import dead_letter_exchange_name, topology
from metachat.settings import Settings, load_settings
from metachat.worker import roles
from metachat.worker.consumers_role import CONSUMERS
from tests.integration.cli.conftest import free_port


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "metachat", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(
    url: str, process: subprocess.Popen[str], *, status: int = 200, within: float = 90
) -> httpx.Response:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"process exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
            )
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == status:
                return last
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{url} never answered {status}; last: {last!r}")


async def _delete_broker_objects(settings: Settings) -> None:
    """Remove what the roles declared under this test's names, so runs leave no queues behind."""
    connection = await aio_pika.connect(settings.amqp.url)
    try:
        channel = await connection.channel()
        for spec in CONSUMERS:
            names = topology(spec, settings)
            for queue in (names.queue, names.dead_letter_queue):
                await channel.queue_delete(queue)
        for exchange in (settings.amqp.exchange, dead_letter_exchange_name(settings)):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def _finish(process: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str]:
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _with_two_api_workers(env: dict[str, str]) -> tuple[int, subprocess.Popen[str], list[int]]:
    """`metachat run --role api --api-workers 2` serving: its port, the process, its workers."""
    port = free_port()
    process = _start(env, "--role", "api", "--port", str(port), "--api-workers", "2")
    _wait_for(f"http://127.0.0.1:{port}/health/live", process)
    deadline = time.monotonic() + 60
    while not (workers := _children(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return port, process, workers


class TestApiWorkers:
    def test_more_processes_serve_one_port_and_stop_with_the_first(self, cli_env) -> None:
        port, process, workers = _with_two_api_workers(cli_env)
        assert len(workers) == 1
        cmdline = Path(f"/proc/{workers[0]}/cmdline").read_bytes()
        assert b"--reuse-port" in cmdline
        for _ in range(20):  # a new connection each time, spread by the kernel
            assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=10).status_code == 200
        code, stderr = _finish(process, signal.SIGTERM)
        assert code == 0, stderr
        assert not _alive(workers[0])

    def test_a_worker_that_dies_brings_the_process_down(self, cli_env) -> None:
        _, process, workers = _with_two_api_workers(cli_env)
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=90)
        assert process.returncode == 1, stderr
        assert "an API worker process ended on its own" in stderr


class TestRunProcess:
    def test_api_role_serves_on_the_given_port_and_stops_on_sigterm(self, cli_env) -> None:
        port = free_port()
        process = _start(cli_env, "--role", "api", "--port", str(port), "--host", "127.0.0.1")
        response = _wait_for(f"http://127.0.0.1:{port}/health/live", process)
        assert response.headers["x-correlation-id"]
        code, stderr = _finish(process, signal.SIGTERM)
        assert code == 0, stderr

    def test_port_comes_from_metachat_port(self, cli_env) -> None:
        port = free_port()
        process = _start({**cli_env, "METACHAT_PORT": str(port)}, "--role", "api")
        _wait_for(f"http://127.0.0.1:{port}/health/live", process)
        code, stderr = _finish(process, signal.SIGINT)
        assert code == 0, stderr

    def test_every_role_by_default_until_ready_then_sigterm(self, cli_env) -> None:
        port = free_port()
        process = _start({**cli_env, "METACHAT_PORT": str(port), "METACHAT_LOG_LEVEL": "INFO"})
        try:
            ready = _wait_for(f"http://127.0.0.1:{port}/health/ready", process)
            assert ready.json()["status"] == "ready"
            code, stderr = _finish(process, signal.SIGTERM)
        finally:
            asyncio.run(_delete_broker_objects(load_settings(cli_env)))
        assert code == 0, stderr
        for role in roles.ROLES:
            assert role in stderr  # roles_starting names each of them

    def test_a_role_that_cannot_start_exits_non_zero(self, cli_env) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            process = _start(cli_env, "--role", "api", "--port", str(port))
            _, stderr = process.communicate(timeout=60)
        assert process.returncode == 1, stderr
        assert "role_crashed" in stderr

    def test_an_unknown_role_is_refused(self, cli_env) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "metachat", "run", "--role", "nope"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "nope" in result.stderr


NO_DEPS: Any = object()  # the fake roles never touch their dependencies


class _FakeRoles:
    """Role runners whose behaviour each test chooses, to drive run_roles' supervision."""

    def __init__(self, behaviours: dict[str, str]) -> None:
        self.behaviours = behaviours
        self.stopped: list[str] = []

    def runner(self, role: str, **_: Any) -> Any:
        async def run(deps: Any, stop: asyncio.Event) -> None:
            behaviour = self.behaviours[role]
            if behaviour == "crash":
                raise RuntimeError(f"{role} broke")
            if behaviour == "return":
                return
            await stop.wait()
            if behaviour == "hang":
                await asyncio.Event().wait()
            self.stopped.append(role)

        return run


class TestRunRoles:
    async def test_stop_ends_every_role_with_exit_zero(self, monkeypatch) -> None:
        fake = _FakeRoles(dict.fromkeys(roles.ROLES, "wait"))
        monkeypatch.setattr(roles, "_runner", fake.runner)
        stop = asyncio.Event()
        running = asyncio.create_task(
            roles.run_roles(NO_DEPS, roles.ROLES, port=1, host="h", stop=stop)
        )
        await asyncio.sleep(0)
        stop.set()
        assert await running == 0
        assert sorted(fake.stopped) == sorted(roles.ROLES)

    @pytest.mark.parametrize("behaviour", ["crash", "return"])
    async def test_a_role_ending_early_stops_the_others_and_exits_one(
        self, monkeypatch, behaviour
    ) -> None:
        fake = _FakeRoles({"api": "wait", "relay": behaviour, "projector": "wait"})
        monkeypatch.setattr(roles, "_runner", fake.runner)
        stop = asyncio.Event()
        code = await roles.run_roles(
            NO_DEPS, ["api", "relay", "projector"], port=1, host="h", stop=stop
        )
        assert code == 1
        assert stop.is_set()
        assert sorted(fake.stopped) == ["api", "projector"]

    async def test_a_role_ignoring_stop_is_cancelled_after_the_grace(self, monkeypatch) -> None:
        fake = _FakeRoles({"api": "wait", "relay": "hang"})
        monkeypatch.setattr(roles, "_runner", fake.runner)
        stop = asyncio.Event()
        stop.set()
        code = await roles.run_roles(
            NO_DEPS, ["api", "relay"], port=1, host="h", stop=stop, grace=0.2
        )
        assert code == 1
        assert fake.stopped == ["api"]

    async def test_sigterm_sets_stop(self, monkeypatch) -> None:
        fake = _FakeRoles({"api": "wait"})
        monkeypatch.setattr(roles, "_runner", fake.runner)
        stop = asyncio.Event()
        running = asyncio.create_task(
            roles.run_roles(NO_DEPS, ["api"], port=1, host="h", stop=stop)
        )
        for _ in range(100):
            await asyncio.sleep(0)
        # Never raise SIGTERM at the default handler: that would end the test run itself.
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        signal.raise_signal(signal.SIGTERM)
        assert await running == 0
        assert fake.stopped == ["api"]
