"""Liveness and readiness.

Live: the process answers HTTP. Ready: the database answers, the broker answers, and the relay's
heartbeat is fresh. The relay check matters even with no traffic: a frozen relay loop leaves
every new event unpublished while everything else looks healthy (R15; Marten #4961).
"""

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from sqlalchemy import text

from metachat.api.broker import BrokerProbe
from metachat.bootstrap import Deps

_CHECK_TIMEOUT = 5.0
_RELAY_AGE = text("""
SELECT extract(epoch FROM clock_timestamp() - beat_at)::float8 AS age
FROM eventstore.heartbeats WHERE name = 'relay'
""")


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one readiness check."""

    ok: bool
    detail: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """All readiness checks; `status` is "ready" only when every check passed."""

    status: str
    checks: dict[str, Check]


async def _database(deps: Deps) -> str:
    async with deps.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return "answers"


async def _relay(deps: Deps) -> str:
    limit = deps.settings.relay.heartbeat_stale_after
    async with deps.engine.connect() as conn:
        age = await conn.scalar(_RELAY_AGE)
    if age is None:
        raise RuntimeError("no relay heartbeat recorded")
    if age > limit:
        raise RuntimeError(f"relay heartbeat is {age:.1f}s old (limit {limit:g}s)")
    return f"heartbeat {age:.1f}s old"


async def _run(check: Callable[[], Awaitable[str]]) -> Check:
    try:
        return Check(ok=True, detail=await asyncio.wait_for(check(), _CHECK_TIMEOUT))
    except TimeoutError:
        return Check(ok=False, detail=f"no answer within {_CHECK_TIMEOUT:g}s")
    except Exception as exc:  # a failed check is reported, never raised
        return Check(ok=False, detail=str(exc) or type(exc).__name__)


async def readiness(deps: Deps, probe: BrokerProbe) -> Readiness:
    """Run every readiness check concurrently."""

    async def broker() -> str:
        await probe.ping()
        return "answers"

    names = ("database", "broker", "relay")
    results = await asyncio.gather(
        _run(lambda: _database(deps)), _run(broker), _run(lambda: _relay(deps))
    )
    checks = dict(zip(names, results, strict=True))
    return Readiness(status="ready" if all(c.ok for c in results) else "not_ready", checks=checks)


class HealthController(Controller):
    """Probes for orchestrators and load balancers (no authentication)."""

    path = "/health"
    tags = ["health"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/live", summary="Liveness")
    async def live(self) -> dict[str, str]:
        """Answer 200 while the process runs."""
        return {"status": "live"}

    @get(
        "/ready",
        summary="Readiness",
        responses={503: ResponseSpec(data_container=Readiness, description="A check failed")},
    )
    async def ready(
        self, deps: NamedDependency[Deps], broker_probe: NamedDependency[BrokerProbe]
    ) -> Response[Readiness]:
        """Answer 200 when the database, the broker and the relay are all well, else 503."""
        result = await readiness(deps, broker_probe)
        return Response(result, status_code=200 if result.status == "ready" else 503)
