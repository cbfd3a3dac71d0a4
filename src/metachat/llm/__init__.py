"""LLM: language models behind one interface, with retries, circuit breaking, fallback, and cost.

Owns: the providers (OpenAI and OpenAI-compatible servers, Anthropic, the offline default), the
resilience around them, the price table and the pre-call budget and rate checks. A library: no
tables, no events. Publishes: nothing; the orchestrator records usage (`CallCost`) in its own
events. Consumes: nothing. See docs/llm.md and architecture/decisions/0009-llm-providers.md.
"""

from metachat.llm.budget import CallRateLimiter, check_budget
from metachat.llm.config import AssistantModels, ProviderSettings, UrlGuard, assistant_models
from metachat.llm.embedding import OfflineEmbedder
from metachat.llm.errors import (
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitedError,
    LLMRateLimitExceededError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    LLMUnavailableError,
    LLMUnsupportedError,
    ProviderFailure,
)
from metachat.llm.gateway import LLMGateway, build_chain, build_embedder
from metachat.llm.ports import (
    ChatMessage,
    Completion,
    CompletionRequest,
    ContextSnippet,
    Embedder,
    LLMProvider,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from metachat.llm.pricing import CallCost, PriceTable, micro_usd
from metachat.llm.resilience import ResiliencePolicy

__all__ = [
    "AssistantModels", "CallCost", "CallRateLimiter", "ChatMessage", "Completion",
    "CompletionRequest", "ContextSnippet", "Embedder", "LLMBudgetExceededError",
    "LLMConfigurationError", "LLMConnectionError", "LLMError", "LLMGateway", "LLMProvider",
    "LLMRateLimitExceededError", "LLMRateLimitedError", "LLMRequestError", "LLMServerError",
    "LLMTimeoutError", "LLMUnavailableError", "LLMUnsupportedError", "OfflineEmbedder",
    "PriceTable", "ProviderFailure", "ProviderSettings", "ResiliencePolicy", "StreamItem",
    "TextDelta", "ToolCall", "ToolSpec", "UrlGuard", "Usage", "assistant_models", "build_chain",
    "build_embedder", "check_budget", "micro_usd",
]  # fmt: skip
