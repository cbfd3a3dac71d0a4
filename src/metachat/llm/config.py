"""A tenant's model settings as the llm module takes them: what to call, with which key.

The fields follow `tenants.ModelChoice`; `assistant_models` turns a tenant's primary and
fallback choices plus its opened keys into `AssistantModels` without this module importing the
tenants context (any object with those attributes will do).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import msgspec

ProviderKind = Literal[
    "offline", "openai", "deepseek", "ollama", "vllm", "llamacpp", "openai_compatible", "anthropic"
]
_MASK = "***"
UrlGuard = Callable[[str], None]
"""Checks a tenant-given base URL before anything connects to it; raises to refuse it."""


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One model a tenant's assistant may call. `api_key` is the decrypted key: never log it.

    The field names follow `tenants.ModelChoice`, plus the key (stored apart, sealed).
    """

    kind: ProviderKind = "offline"
    model: str = "offline"
    api_key: str | None = None
    base_url: str | None = None
    """Overrides the kind's usual address (`openai_compatible` requires one)."""
    temperature: float | None = None
    """None leaves it to the server. Anthropic ignores it: its current API has no sampling."""
    max_tokens: int | None = None
    top_p: float | None = None
    timeout_seconds: float = 30.0

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"ProviderSettings({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """The fields for rich (tracebacks with locals), the key masked like in `repr`."""
        return [
            (name, _MASK if name == "api_key" and getattr(self, name) else getattr(self, name))
            for name in self.__struct_fields__
        ]


class AssistantModels(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's chain: the primary model, fallbacks in order, and the embedder."""

    primary: ProviderSettings = msgspec.field(default_factory=ProviderSettings)
    fallbacks: tuple[ProviderSettings, ...] = ()
    embedder: ProviderSettings | None = None
    """None means the offline embedder. Anthropic cannot embed."""
    offline_last: bool = True
    """End the chain with the offline provider (when it is not already in it)."""


class ModelChoiceLike(Protocol):
    """The attributes of `tenants.ModelChoice` that the llm module reads."""

    @property
    def kind(self) -> ProviderKind:
        """The provider kind."""
        ...

    @property
    def model(self) -> str:
        """The model name."""
        ...

    @property
    def base_url(self) -> str | None:
        """A tenant-given server address, if any."""
        ...

    @property
    def temperature(self) -> float:
        """Sampling temperature."""
        ...

    @property
    def max_tokens(self) -> int:
        """Output token limit."""
        ...

    @property
    def timeout_seconds(self) -> float:
        """Per-call timeout."""
        ...


def provider_settings(choice: ModelChoiceLike, *, api_key: str | None) -> ProviderSettings:
    """One choice with its (decrypted) key."""
    return ProviderSettings(
        kind=choice.kind,
        model=choice.model,
        api_key=api_key,
        base_url=choice.base_url,
        temperature=choice.temperature,
        max_tokens=choice.max_tokens,
        timeout_seconds=choice.timeout_seconds,
    )


def assistant_models(
    primary: ModelChoiceLike,
    fallbacks: Sequence[ModelChoiceLike] = (),
    *,
    api_keys: Mapping[str, str],
    embedder: ProviderSettings | None = None,
    offline_last: bool = True,
) -> AssistantModels:
    """A tenant's chain settings from its choices and its keys by provider kind."""
    return AssistantModels(
        primary=provider_settings(primary, api_key=api_keys.get(primary.kind)),
        fallbacks=tuple(provider_settings(c, api_key=api_keys.get(c.kind)) for c in fallbacks),
        embedder=embedder,
        offline_last=offline_last,
    )
