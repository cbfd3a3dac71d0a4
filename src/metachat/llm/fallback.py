"""A tenant's providers in order: the first that answers wins, and every failure is accounted for.

When all fail, `LLMUnavailableError.failures` lists each provider's reason, in order, so the
orchestrator can hand the conversation to a human and say why. It never fails silently.
"""

from collections.abc import AsyncIterator, Sequence

import structlog

from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.errors import LLMError, LLMUnavailableError, ProviderFailure
from metachat.llm.ports import (
    Completion,
    CompletionRequest,
    Embedder,
    LLMProvider,
    StreamItem,
    aclose,
)

log = structlog.get_logger()


class FallbackChain:
    """Tries providers in order (an open circuit fails at once, so it is skipped without waiting).

    Any failure moves on, a refused request (4xx) too: another provider with another model may
    accept it. Embeddings do not fall back: vectors of different models cannot be compared, so
    `embed` always uses the one `embedder` (the offline one unless given).
    """

    def __init__(
        self,
        providers: Sequence[LLMProvider],
        *,
        embedder: Embedder | None = None,
        name: str | None = None,
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = tuple(providers)
        self.name = name or "chain:" + ">".join(p.name for p in self.providers)
        self._embedder = embedder or OfflineEmbedder()

    async def complete(self, request: CompletionRequest) -> Completion:
        """The first provider's completion that succeeds."""
        failures: list[ProviderFailure] = []
        for provider in self.providers:
            try:
                return await provider.complete(request)
            except Exception as exc:
                failures.extend(self._failed(provider, exc))
        raise self._all_failed(failures)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamItem]:
        """The first provider's stream that starts.

        A stream that breaks after it started raises `LLMUnavailableError` at once: its text
        has reached the customer, and another provider cannot continue it.
        """
        failures: list[ProviderFailure] = []
        for provider in self.providers:
            started = False
            iterator = aiter(provider.stream(request))
            try:
                async for item in iterator:
                    started = True
                    yield item
            except Exception as exc:
                failures.extend(self._failed(provider, exc))
                if started:
                    raise self._all_failed(failures, interrupted=True) from exc
                continue
            finally:
                await aclose(iterator)
            return
        raise self._all_failed(failures)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors from the chain's one embedder."""
        return await self._embedder.embed(texts)

    def _failed(self, provider: LLMProvider, error: Exception) -> list[ProviderFailure]:
        if isinstance(error, LLMUnavailableError):
            failures = list(error.failures)  # an open circuit, or a nested chain
        elif isinstance(error, LLMError):
            failures = [ProviderFailure.of(error)]
        else:
            # A bug or an unexpected answer in one provider must not cost the customer a reply.
            log.error("llm_provider_crashed", provider=provider.name, exc_info=error)
            message = f"unexpected {type(error).__name__}"
            failures = [ProviderFailure(provider=provider.name, code="llm_error", message=message)]
        log.warning(
            "llm_provider_failed",
            provider=provider.name,
            chain=self.name,
            error_codes=[f.code for f in failures],
        )
        return failures

    def _all_failed(
        self, failures: list[ProviderFailure], *, interrupted: bool = False
    ) -> LLMUnavailableError:
        if interrupted:
            message = "the answer broke off after it had started; it was not retried"
            code = "llm_stream_interrupted"
            failures = [*failures, ProviderFailure(provider=self.name, code=code, message=message)]
        log.error(
            "llm_all_providers_failed",
            chain=self.name,
            interrupted=interrupted,
            error_codes=[f.code for f in failures],
        )
        return LLMUnavailableError(tuple(failures), provider=self.name)
