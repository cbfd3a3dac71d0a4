"""Building a tenant's chain from its settings: presets, keys, URL guard, offline last."""

import httpx2
import msgspec
import pytest

from metachat.llm import (
    AssistantModels,
    LLMGateway,
    LLMUnavailableError,
    ProviderSettings,
    assistant_models,
    build_chain,
    build_embedder,
)
from metachat.llm.anthropic_provider import AnthropicProvider
from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.errors import LLMConfigurationError
from metachat.llm.gateway import UnusableProvider, build_provider
from metachat.llm.offline import OfflineProvider
from metachat.llm.ports import ChatMessage, CompletionRequest, ContextSnippet
from metachat.llm.resilience import ResiliencePolicy, ResilientProvider
from metachat.tenants.commands import ModelChoice
from tests.unit.llm.fakes import (
    FakeAPI,
    FakeClock,
    RecordingSleep,
    anthropic_error,
    openai_completion,
    openai_embeddings,
    openai_error,
)

QUESTION = CompletionRequest(
    messages=(ChatMessage(role="user", content="What are your opening hours?"),),
    context=(ContextSnippet(number=1, text="Opening hours are 9 to 5.", source="faq.md"),),
)
OPENAI = ProviderSettings(kind="openai", model="gpt-4o", api_key="sk-openai")
CLAUDE = ProviderSettings(kind="anthropic", model="claude-sonnet-4", api_key="sk-ant")


def names(models: AssistantModels, **kwargs) -> list[str]:
    return [p.name for p in build_chain(models, **kwargs).providers]


class RecordingGuard:
    def __init__(self, *, refuse: bool = False) -> None:
        self.seen: list[str] = []
        self.refuse = refuse

    def __call__(self, url: str) -> None:
        self.seen.append(url)
        if self.refuse:
            raise ValueError("private address 10.0.0.5")


class TestBuildChain:
    def test_the_default_is_the_offline_provider_alone(self):
        chain = build_chain(AssistantModels())
        assert len(chain.providers) == 1
        assert isinstance(chain.providers[0], OfflineProvider)

    def test_primary_then_fallbacks_then_offline_each_with_retries_and_breaker(self):
        chain = build_chain(AssistantModels(primary=OPENAI, fallbacks=(CLAUDE,)))
        assert [p.name for p in chain.providers] == ["openai", "anthropic", "offline"]
        assert all(isinstance(p, ResilientProvider) for p in chain.providers[:2])

    def test_offline_last_can_be_turned_off(self):
        assert names(AssistantModels(primary=OPENAI, offline_last=False)) == ["openai"]

    def test_the_offline_provider_is_not_added_twice(self):
        models = AssistantModels(primary=OPENAI, fallbacks=(ProviderSettings(),))
        assert names(models) == ["openai", "offline"]

    def test_presets_give_each_kind_its_address_and_key_rule(self):
        for kind, url in [
            ("deepseek", "https://api.deepseek.com/v1/"),
            ("ollama", "http://localhost:11434/v1/"),
            ("vllm", "http://localhost:8000/v1/"),
            ("llamacpp", "http://localhost:8080/v1/"),
        ]:
            settings = ProviderSettings(kind=kind, model="m", api_key="k")  # type: ignore[arg-type]
            provider = build_provider(settings)
            assert str(provider._client.base_url) == url  # type: ignore[attr-defined]
        assert isinstance(build_provider(CLAUDE), AnthropicProvider)

    async def test_a_failure_of_every_provider_ends_in_an_error_with_every_reason(self):
        # One fake server answers both SDKs, as one shared client serves every provider.
        api = FakeAPI(
            *(openai_error(503, "overloaded") for _ in range(3)),
            *(anthropic_error(529, "overloaded_error", "Overloaded") for _ in range(3)),
        )
        clock = FakeClock()
        chain = build_chain(
            AssistantModels(primary=OPENAI, fallbacks=(CLAUDE,), offline_last=False),
            http_client=api.client(),
            clock=clock,
            sleep=RecordingSleep(clock),
        )
        with pytest.raises(LLMUnavailableError) as caught:
            await chain.complete(QUESTION)
        assert [(f.provider, f.code, f.message) for f in caught.value.failures] == [
            ("openai", "llm_server_error", "HTTP 503: overloaded"),
            ("anthropic", "llm_server_error", "HTTP 529: Overloaded"),
        ]
        assert [r.url.host for r in api.requests] == ["api.openai.com"] * 3 + [
            "api.anthropic.com"
        ] * 3

    async def test_with_offline_last_the_customer_still_gets_an_answer_from_context(self):
        api = FakeAPI(*(openai_error(500, "boom") for _ in range(3)))
        clock = FakeClock()
        chain = build_chain(
            AssistantModels(primary=OPENAI),
            http_client=api.client(),
            clock=clock,
            sleep=RecordingSleep(clock),
        )
        result = await chain.complete(QUESTION)
        assert result.provider == "offline"
        assert result.text.startswith("Opening hours are 9 to 5. [1]")

    async def test_the_settings_timeout_bounds_each_call(self):
        chain = build_chain(
            AssistantModels(primary=msgspec.structs.replace(OPENAI, timeout_seconds=7.5)),
            policy=ResiliencePolicy(timeout_seconds=99),
        )
        assert chain.providers[0]._policy.timeout_seconds == 7.5  # type: ignore[attr-defined]


class TestMisconfiguredProviders:
    async def test_a_missing_key_keeps_its_place_and_its_reason(self):
        chain = build_chain(
            AssistantModels(
                primary=ProviderSettings(kind="openai", model="gpt-4o"), offline_last=False
            )
        )
        assert isinstance(chain.providers[0], UnusableProvider)
        with pytest.raises(LLMUnavailableError) as caught:
            await chain.complete(QUESTION)
        (failure,) = caught.value.failures
        assert (failure.provider, failure.code, failure.message) == (
            "openai",
            "llm_configuration_error",
            "an API key is required",
        )

    def test_anthropic_needs_a_key_and_openai_compatible_a_base_url(self):
        with pytest.raises(LLMConfigurationError, match="API key"):
            build_provider(ProviderSettings(kind="anthropic", model="claude"))
        with pytest.raises(LLMConfigurationError, match="base_url"):
            build_provider(ProviderSettings(kind="openai_compatible", model="m"))

    def test_local_servers_need_no_key(self):
        provider = build_provider(ProviderSettings(kind="ollama", model="llama3.1"))
        assert provider.name == "ollama"

    def test_a_base_url_must_be_http(self):
        with pytest.raises(LLMConfigurationError, match="http"):
            build_provider(ProviderSettings(kind="ollama", model="m", base_url="file:///etc"))


class TestUrlGuard:
    async def test_a_tenant_given_base_url_is_checked_before_any_request(self):
        guard = RecordingGuard()
        api = FakeAPI(openai_completion(content="from my server"))
        settings = ProviderSettings(
            kind="openai_compatible", model="qwen3:8b", base_url="https://llm.acme.example/v1"
        )
        chain = build_chain(
            AssistantModels(primary=settings), http_client=api.client(), url_guard=guard
        )
        assert guard.seen == ["https://llm.acme.example/v1"]
        assert (await chain.complete(QUESTION)).text == "from my server"
        assert str(api.requests[0].url) == "https://llm.acme.example/v1/chat/completions"

    async def test_a_refused_url_is_never_called_and_the_reason_is_kept(self):
        guard = RecordingGuard(refuse=True)
        api = FakeAPI()
        settings = ProviderSettings(kind="ollama", model="m", base_url="http://10.0.0.5:11434/v1")
        chain = build_chain(
            AssistantModels(primary=settings, offline_last=False),
            http_client=api.client(),
            url_guard=guard,
        )
        with pytest.raises(LLMUnavailableError) as caught:
            await chain.complete(QUESTION)
        assert api.requests == []
        assert caught.value.failures[0].message == "base_url refused: private address 10.0.0.5"

    def test_preset_addresses_are_the_operators_and_not_checked(self):
        guard = RecordingGuard(refuse=True)
        build_chain(AssistantModels(primary=OPENAI), url_guard=guard)
        assert guard.seen == []


class TestEmbedder:
    async def test_none_means_the_offline_embedder(self):
        assert isinstance(build_embedder(None), OfflineEmbedder)

    async def test_an_openai_compatible_embedder_is_used_with_retries(self):
        api = FakeAPI(openai_error(500, "boom"), openai_embeddings([[0.6, 0.8]]))
        clock = FakeClock()
        settings = ProviderSettings(kind="openai", model="text-embedding-3-small", api_key="k")
        chain = build_chain(
            AssistantModels(embedder=settings),
            http_client=api.client(),
            clock=clock,
            sleep=RecordingSleep(clock),
        )
        assert await chain.embed(["hours"]) == [[0.6, 0.8]]

    def test_anthropic_cannot_embed(self):
        with pytest.raises(LLMConfigurationError, match="no embeddings"):
            build_embedder(CLAUDE)


class TestSettingsNeverShowTheKey:
    def test_repr_masks_the_key(self):
        text = repr(AssistantModels(primary=OPENAI, fallbacks=(CLAUDE,)))
        assert "sk-openai" not in text
        assert "sk-ant" not in text
        assert "api_key='***'" in text
        assert "api_key=None" in repr(ProviderSettings())

    def test_rich_repr_masks_the_key_too(self):
        assert ("api_key", "***") in OPENAI.__rich_repr__()


class TestFromTenantSettings:
    def test_a_tenants_choices_and_keys_become_the_chain_settings(self):
        primary = ModelChoice(kind="openai", model="gpt-4o-mini", temperature=0.2, max_tokens=400)
        fallback = ModelChoice(
            kind="ollama", model="llama3.1", base_url="http://gpu.internal:11434/v1"
        )
        models = assistant_models(primary, (fallback,), api_keys={"openai": "sk-t"})
        assert models.primary == ProviderSettings(
            kind="openai",
            model="gpt-4o-mini",
            api_key="sk-t",
            temperature=0.2,
            max_tokens=400,
            timeout_seconds=30.0,
        )
        assert models.fallbacks[0].api_key is None
        assert models.fallbacks[0].base_url == "http://gpu.internal:11434/v1"


class TestLLMGateway:
    async def test_the_same_settings_get_the_same_chain_so_breakers_remember(self):
        gateway = LLMGateway()
        models = AssistantModels(primary=OPENAI)
        first = gateway.chain(models)
        assert gateway.chain(AssistantModels(primary=OPENAI)) is first
        assert gateway.chain(AssistantModels(primary=CLAUDE)) is not first
        await gateway.aclose()

    async def test_old_chains_are_dropped_beyond_the_cap(self):
        gateway = LLMGateway(max_chains=1)
        first = gateway.chain(AssistantModels(primary=OPENAI))
        gateway.chain(AssistantModels(primary=CLAUDE))
        assert gateway.chain(AssistantModels(primary=OPENAI)) is not first
        await gateway.aclose()

    async def test_a_client_it_was_given_is_the_callers_to_close(self):
        client = httpx2.AsyncClient()
        gateway = LLMGateway(http_client=client)
        await gateway.aclose()
        assert not client.is_closed
        await client.aclose()
