"""Rate limits: a token bucket per caller, answered with 429, `Retry-After` and `RateLimit-*`."""

from collections.abc import AsyncIterator, Callable

import msgspec
import pytest_asyncio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from metachat.api.app import create_app
from metachat.api.ratelimit import RateLimiter
from metachat.bootstrap import Deps, build
from metachat.kernel.actors import Actor
from metachat.kernel.ids import uuid7
from metachat.settings import RateLimitSettings, load_settings
from metachat.tenants.handlers import create_tenant
from tests.conftest import make_settings
from tests.integration.api.conftest import assert_problem

BURST = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited_deps(new_database: Callable[[], str]) -> AsyncIterator[Deps]:
    # Refills one request every 1000 s: nothing comes back within a test.
    limits = RateLimitSettings(rate=0.001, burst=BURST)
    settings = msgspec.structs.replace(make_settings(new_database()), rate_limit=limits)
    built = await build(settings, pool_size=5)
    yield built
    await built.close()


@pytest_asyncio.fixture(loop_scope="session")
async def limited(limited_deps: Deps) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(limited_deps)) as client:
        yield client


async def _key(deps: Deps, name: str) -> dict[str, str]:
    issued = await create_tenant(
        name, deps=deps.tenants, actor=Actor.operator("test"), correlation_id=uuid7()
    )
    return {"Authorization": f"Bearer {issued.api_key}"}


async def test_a_burst_over_the_limit_is_refused_with_retry_after(
    limited: AsyncTestClient[Litestar], limited_deps: Deps
) -> None:
    auth = await _key(limited_deps, "Acme")
    answers = [await limited.get("/v1/tenant", headers=auth) for _ in range(BURST)]
    assert [a.status_code for a in answers] == [200] * BURST
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["RateLimit-Limit"] for a in answers} == {str(BURST)}

    refused = await limited.get("/v1/tenant", headers=auth)
    body = assert_problem(refused, 429, "too_many_requests")
    assert "rate limit" in body["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == str(BURST)


async def test_another_key_is_unaffected(
    limited: AsyncTestClient[Litestar], limited_deps: Deps
) -> None:
    spent, fresh = await _key(limited_deps, "Acme"), await _key(limited_deps, "Globex")
    for _ in range(BURST + 1):
        await limited.get("/v1/tenant", headers=spent)
    assert (await limited.get("/v1/tenant", headers=spent)).status_code == 429
    answer = await limited.get("/v1/tenant", headers=fresh)
    assert answer.status_code == 200
    assert answer.headers["RateLimit-Remaining"] == str(BURST - 1)


async def test_unauthenticated_requests_do_not_spend_tokens(
    limited: AsyncTestClient[Litestar],
) -> None:
    answer = await limited.get("/v1/tenant", headers={"Authorization": "Bearer mck_nope_nope"})
    assert answer.status_code == 401
    assert "RateLimit-Remaining" not in answer.headers


class TestBucket:
    def test_refills_at_the_configured_rate_up_to_the_burst(self) -> None:
        now = [0.0]
        limiter = RateLimiter(RateLimitSettings(rate=2.0, burst=2), clock=lambda: now[0])
        caller = "api_key:k1"
        assert [limiter.take(caller).allowed for _ in range(3)] == [True, True, False]
        assert limiter.take(caller).retry_after == 1  # half a second, rounded up
        now[0] = 0.5
        assert limiter.take(caller).allowed
        now[0] = 100.0
        decision = limiter.take(caller)
        assert (decision.allowed, decision.remaining) == (True, 1)  # capped at the burst

    def test_users_and_keys_have_their_own_buckets(self) -> None:
        limiter = RateLimiter(RateLimitSettings(rate=0.001, burst=1), clock=lambda: 0.0)
        assert limiter.take("api_key:x").allowed
        assert not limiter.take("api_key:x").allowed
        assert limiter.take("user:x").allowed


def test_limits_are_read_from_the_environment() -> None:
    settings = load_settings(
        {"METACHAT_RATE_LIMIT__RATE": "5.5", "METACHAT_RATE_LIMIT__BURST": "20"}
    )
    assert settings.rate_limit == RateLimitSettings(rate=5.5, burst=20)
