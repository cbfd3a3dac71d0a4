"""R13 and failures: a rebuild has no side effects; a failed rebuild leaves generation N serving."""

import socket
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from metachat.bootstrap import Deps
from metachat.eventstore.projection import LeaseTimeoutError, RebuildError, lease, rebuild
from metachat.tenants.projections import TENANT_DIRECTORY
from tests.integration.projections.support import (
    TenantWriter,
    caught_up,
    checkpoint,
    live_runner,
    oracle,
    read_model,
    schemas,
)
from tests.waiting import eventually


class TestRebuildFailures:
    async def test_a_second_rebuild_is_refused_while_one_runs(self, deps: Deps) -> None:
        await TenantWriter(deps.store).seed(tenants=20)
        async with deps.engine.connect() as holder:
            assert await lease.try_lock(holder, lease.Lock.REBUILD, TENANT_DIRECTORY.name)
            with pytest.raises(RebuildError, match="already running"):
                await rebuild(TENANT_DIRECTORY, store=deps.store)
            await lease.unlock(holder, lease.Lock.REBUILD, TENANT_DIRECTORY.name)
        assert await schemas(deps.engine) == ["proj_tenant_directory_g1"]

    async def test_a_lease_never_handed_over_leaves_generation_one_serving(
        self, deps: Deps
    ) -> None:
        await TenantWriter(deps.store).seed(tenants=20)
        async with live_runner(deps.store):
            await eventually(lambda: caught_up(deps.engine))
        before = await read_model(deps.engine)
        # A writer that ignores hand-over requests (an old runner, or a stuck one) holds the lease.
        async with deps.engine.connect() as stubborn:
            assert await lease.try_lock(stubborn, lease.Lock.LEASE, TENANT_DIRECTORY.name)
            with pytest.raises(LeaseTimeoutError):
                await rebuild(TENANT_DIRECTORY, store=deps.store, handover_timeout=0.5)
            await stubborn.invalidate()
        assert await schemas(deps.engine) == ["proj_tenant_directory_g1"]
        assert (await checkpoint(deps.engine))[1] == 1
        assert await read_model(deps.engine) == before


class OutboundCalls:
    """Counts HTTP requests (any httpx client, whatever its transport) and TCP connects."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.http: list[str] = []
        self.tcp: list[Any] = []
        sink = httpx.MockTransport(self._record)
        monkeypatch.setattr(
            httpx.AsyncHTTPTransport,
            "handle_async_request",
            lambda _self, request: sink.handle_async_request(request),
        )
        monkeypatch.setattr(
            httpx.HTTPTransport,
            "handle_request",
            lambda _self, request: sink.handle_request(request),
        )
        real_connect = socket.socket.connect

        def counting_connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.tcp.append(address)
            return real_connect(sock, address)

        monkeypatch.setattr(socket.socket, "connect", counting_connect)

    def _record(self, request: httpx.Request) -> httpx.Response:
        self.http.append(str(request.url))
        return httpx.Response(204)


_COUNTS = text(
    "SELECT (SELECT count(*) FROM eventstore.outbox), (SELECT count(*) FROM eventstore.events), "
    "(SELECT count(*) FROM eventstore.tracking), (SELECT count(*) FROM eventstore.consumer_marks)"
)


async def _counts(deps: Deps) -> tuple[int, ...]:
    async with deps.engine.connect() as conn:
        return tuple((await conn.execute(_COUNTS)).one())


class TestNoSideEffects:
    async def test_rebuild_makes_no_outbound_call_and_publishes_nothing(
        self, deps: Deps, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await TenantWriter(deps.store).seed(tenants=400)
        outbound = OutboundCalls(monkeypatch)
        before = await _counts(deps)
        result = await rebuild(TENANT_DIRECTORY, store=deps.store)
        after = await _counts(deps)
        assert result.events == before[1]
        assert outbound.http == []
        assert outbound.tcp == []
        assert after == before, "no event appended, no outbox row, no consumer effect"
        assert await read_model(deps.engine) == await oracle(deps.engine)
