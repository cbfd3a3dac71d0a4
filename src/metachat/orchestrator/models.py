"""The tenant's model chain, what a call costs, and the checks made before every call.

One `Models` per process: the gateway caches each tenant's chain (so its circuit breakers
remember failures across replies), the price table turns tokens into micro-USD, and the call
rate limiter (which makes a call wait its turn, within a bound) and the monthly budget are
checked before a model is called, never after.
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.llm import (
    CallRateLimiter,
    CompletionRequest,
    LLMGateway,
    LLMProvider,
    PriceTable,
    UrlGuard,
    Usage,
    assistant_models,
    check_budget,
    micro_usd,
)
from metachat.orchestrator.events import ModelCalled
from metachat.orchestrator.netguard import UrlRefusedError, resolve_checked
from metachat.tenants import LoadedAssistant
from metachat.tenants.commands import AssistantSettings

__all__ = ["Models", "UrlRefusedError", "public_url_guard"]

# The month's spend from the usage events themselves (tenant-led index on type). A read model
# of spend per tenant and month would make this one row: it comes with billing.
_SPENT = text("""
SELECT coalesce(sum((payload->>'cost_micro_usd')::bigint), 0)
FROM eventstore.events
WHERE tenant_id = :t AND type = :type AND occurred_at >= :since
""")


def public_url_guard(allowed_hosts: Sequence[str]) -> UrlGuard:
    """Refuse base URLs of internal addresses (`netguard`), unless the operator allowed the host.

    An allowed host is a self-hosted model server. The SDKs connect by themselves, so a name
    that resolves differently at connect time (DNS rebinding) is not caught here; the gateway's
    client follows no redirects. Tenants' HTTP tools are pinned at connect time (`http_tools`).
    """
    allowed = {host.lower() for host in allowed_hosts}

    def guard(url: str) -> None:
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            raise UrlRefusedError("the URL has no host")
        if host in allowed:
            return
        resolve_checked(host, allowed)

    return guard


class Models:
    """The process's gateway, prices and limits."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        gateway: LLMGateway,
        prices: PriceTable,
        limiter: CallRateLimiter | None = None,
    ) -> None:
        self._engine = engine
        self.gateway = gateway
        self.prices = prices
        self.limiter = limiter or CallRateLimiter()

    def provider_for(self, loaded: LoadedAssistant) -> LLMProvider:
        """The tenant's chain (primary, fallbacks, the offline model last)."""
        settings = loaded.settings
        models = assistant_models(settings.primary, settings.fallbacks, api_keys=loaded.api_keys)
        return self.gateway.chain(models)

    def price(self, model: str, usage: Usage) -> tuple[int, bool]:
        """(cost in micro-USD, whether the model is in the price table) of one call."""
        return self.prices.cost(usage, model), self.prices.is_priced(model)

    async def check(
        self, tenant_id: uuid.UUID, settings: AssistantSettings, request: CompletionRequest
    ) -> None:
        """Wait the call's turn under the call rate, or refuse it: too long a wait, or over budget.

        The call is refused only when its turn is more than the limiter's `max_wait` away
        (`DEFAULT_MAX_WAIT_SECONDS` by default); a shorter wait is waited, so a burst delays
        answers instead of handing conversations to a human.
        """
        await self.limiter.acquire(tenant_id, calls_per_minute=settings.calls_per_minute)
        if settings.monthly_budget_usd is None:
            return
        estimate = self.prices.estimate(
            request, settings.primary.model, max_tokens=settings.primary.max_tokens
        )
        spent = await self.spent_this_month(tenant_id)
        check_budget(spent, micro_usd(settings.monthly_budget_usd), estimate)

    async def spent_this_month(self, tenant_id: uuid.UUID) -> int:
        """Micro-USD the tenant's replies cost since the first of this month (UTC)."""
        since = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        async with self._engine.connect() as conn:
            spent = await conn.scalar(
                _SPENT, {"t": tenant_id, "type": ModelCalled.type, "since": since}
            )
        return int(spent or 0)
