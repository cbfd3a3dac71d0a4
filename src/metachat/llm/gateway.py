"""A tenant's provider chain, built from its settings.

`build_chain` turns `AssistantModels` into a `FallbackChain` of `ResilientProvider`s, ending
with the offline provider unless `offline_last` is off, so a reply always comes back: an answer,
or an "I don't know" marked `[confidence: very low]` that the orchestrator hands to a human.
A provider whose settings cannot be used (no key, a refused base URL) stays in the chain as an
`UnusableProvider`, so its reason shows up in the failures instead of vanishing.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

import httpx2
import msgspec
import structlog

from metachat.llm.anthropic_provider import AnthropicProvider
from metachat.llm.config import AssistantModels, ProviderSettings, UrlGuard
from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.errors import LLMConfigurationError
from metachat.llm.fallback import FallbackChain
from metachat.llm.offline import OfflineProvider
from metachat.llm.openai_compatible import PRESETS, OpenAICompatibleProvider
from metachat.llm.ports import (
    Completion,
    CompletionRequest,
    Embedder,
    LLMProvider,
    MonotonicClock,
    StreamItem,
)
from metachat.llm.resilience import ResiliencePolicy, ResilientProvider, Sleep

log = structlog.get_logger()


class UnusableProvider:
    """Stands in for a provider whose settings are wrong: every call raises why."""

    def __init__(self, error: LLMConfigurationError) -> None:
        self.name = error.provider
        self.reason = error.message

    def _error(self) -> LLMConfigurationError:
        return LLMConfigurationError(self.reason, provider=self.name)

    async def complete(self, request: CompletionRequest) -> Completion:
        """Raises `LLMConfigurationError`."""
        del request  # wrong settings fail whatever is asked
        raise self._error()

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """Raises `LLMConfigurationError`."""
        del request
        raise self._error()
        yield  # pragma: no cover - makes this an async generator, like every other stream

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Raises `LLMConfigurationError`."""
        del texts
        raise self._error()


def build_provider(
    settings: ProviderSettings,
    *,
    http_client: httpx2.AsyncClient | None = None,
    url_guard: UrlGuard | None = None,
) -> LLMProvider:
    """The bare provider for one settings entry (no retries); raises `LLMConfigurationError`."""
    if settings.kind == "offline":
        return OfflineProvider()
    base_url = _checked_base_url(settings, url_guard)
    if settings.kind == "anthropic":
        if not settings.api_key:
            raise LLMConfigurationError("an API key is required", provider=settings.kind)
        return AnthropicProvider(
            model=settings.model,
            api_key=settings.api_key,
            base_url=base_url,
            timeout_seconds=settings.timeout_seconds,
            max_tokens=settings.max_tokens,
            http_client=http_client,
        )
    preset = PRESETS[settings.kind]
    if preset.requires_key and not settings.api_key:
        raise LLMConfigurationError("an API key is required", provider=settings.kind)
    url = base_url or preset.base_url
    if url is None:
        raise LLMConfigurationError("a base_url is required", provider=settings.kind)
    return OpenAICompatibleProvider(
        name=settings.kind,
        model=settings.model,
        base_url=url,
        api_key=settings.api_key,
        timeout_seconds=settings.timeout_seconds,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        top_p=settings.top_p,
        max_tokens_field=preset.max_tokens_field,
        http_client=http_client,
    )


def build_chain(
    models: AssistantModels,
    *,
    http_client: httpx2.AsyncClient | None = None,
    clock: MonotonicClock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    url_guard: UrlGuard | None = None,
    policy: ResiliencePolicy | None = None,
) -> FallbackChain:
    """A fresh chain for `models`: its circuit breakers start closed (see `LLMGateway`)."""
    base = policy or ResiliencePolicy()
    providers: list[LLMProvider] = []
    for settings in (models.primary, *models.fallbacks):
        try:
            provider = build_provider(settings, http_client=http_client, url_guard=url_guard)
        except LLMConfigurationError as exc:
            log.warning("llm_provider_misconfigured", provider=exc.provider, reason=exc.message)
            providers.append(UnusableProvider(exc))
            continue
        providers.append(_resilient(provider, settings, policy=base, clock=clock, sleep=sleep))
    if models.offline_last and not any(isinstance(p, OfflineProvider) for p in providers):
        providers.append(OfflineProvider())
    try:
        embedder = build_embedder(
            models.embedder,
            http_client=http_client,
            url_guard=url_guard,
            policy=base,
            clock=clock,
            sleep=sleep,
        )
    except LLMConfigurationError as exc:
        log.warning("llm_embedder_misconfigured", provider=exc.provider, reason=exc.message)
        embedder = UnusableProvider(exc)
    return FallbackChain(providers, embedder=embedder)


def build_embedder(
    settings: ProviderSettings | None,
    *,
    http_client: httpx2.AsyncClient | None = None,
    url_guard: UrlGuard | None = None,
    policy: ResiliencePolicy | None = None,
    clock: MonotonicClock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> Embedder:
    """The embedder for `settings`: offline when None, else an OpenAI-compatible endpoint."""
    if settings is None or settings.kind == "offline":
        return OfflineEmbedder()
    if settings.kind == "anthropic":
        raise LLMConfigurationError(
            "Anthropic has no embeddings; use offline or an OpenAI-compatible embedder",
            provider=settings.kind,
        )
    provider = build_provider(settings, http_client=http_client, url_guard=url_guard)
    base = policy or ResiliencePolicy()
    return _resilient(provider, settings, policy=base, clock=clock, sleep=sleep)


def _resilient(
    provider: LLMProvider,
    settings: ProviderSettings,
    *,
    policy: ResiliencePolicy,
    clock: MonotonicClock,
    sleep: Sleep,
) -> LLMProvider:
    if isinstance(provider, OfflineProvider):
        return provider  # in-process and cannot fail: nothing to retry or break
    bounded = msgspec.structs.replace(policy, timeout_seconds=settings.timeout_seconds)
    return ResilientProvider(provider, policy=bounded, clock=clock, sleep=sleep)


def _checked_base_url(settings: ProviderSettings, url_guard: UrlGuard | None) -> str | None:
    # Only a tenant-given URL is checked: the presets' addresses are the operator's choice.
    url = settings.base_url
    if url is None:
        return None
    if not url.startswith(("https://", "http://")):
        raise LLMConfigurationError("base_url must be an http(s) URL", provider=settings.kind)
    if url_guard is not None:
        try:
            url_guard(url)
        except Exception as exc:
            raise LLMConfigurationError(f"base_url refused: {exc}", provider=settings.kind) from exc
    return url


class LLMGateway:
    """One per process (the composition root builds it into `Deps`): tenants' chains, cached.

    A chain is built once per distinct `AssistantModels` and reused, so its circuit breakers
    remember failures across replies (a chain rebuilt per reply would never open). New settings
    are a new key and get a fresh chain. The gateway owns one HTTP client for every provider
    (pooled connections) that does not follow redirects: a tenant's server could otherwise
    redirect past the URL guard.
    """

    def __init__(
        self,
        *,
        http_client: httpx2.AsyncClient | None = None,
        url_guard: UrlGuard | None = None,
        policy: ResiliencePolicy | None = None,
        clock: MonotonicClock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_chains: int = 1024,
    ) -> None:
        self._owns_client = http_client is None
        self._http = http_client or httpx2.AsyncClient(
            follow_redirects=False,
            timeout=httpx2.Timeout(60.0, connect=5.0),
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._url_guard = url_guard
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._max = max_chains
        self._chains: OrderedDict[AssistantModels, FallbackChain] = OrderedDict()

    def chain(self, models: AssistantModels) -> FallbackChain:
        """The tenant's chain for these settings (built on first use)."""
        chain = self._chains.get(models)
        if chain is None:
            chain = build_chain(
                models,
                http_client=self._http,
                url_guard=self._url_guard,
                policy=self._policy,
                clock=self._clock,
                sleep=self._sleep,
            )
            self._chains[models] = chain
        self._chains.move_to_end(models)
        while len(self._chains) > self._max:
            self._chains.popitem(last=False)
        return chain

    async def aclose(self) -> None:
        """Close the HTTP client if the gateway made it."""
        if self._owns_client:
            await self._http.aclose()
