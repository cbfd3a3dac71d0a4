"""What a call costs: a price table per model, in integer micro-USD (no float drift).

Prices are USD per million tokens, kept as integer micro-USD per million tokens, so a cost is
`tokens * price / 1e6` in micro-USD, rounded up: many tiny calls never add up to free.
A model is found by exact name, else by the longest entry it starts with at a separator
(`gpt-4o-2024-08-06` is `gpt-4o`); local models only by exact name or Ollama tag
(`llama3.1:8b` is `llama3.1`, but `mistral-large` is not the free local `mistral`). An unknown
model costs 0 and is reported unpriced, so it can be flagged instead of silently billed nothing.
"""

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

import msgspec

from metachat.llm.ports import Completion, CompletionRequest, Usage

MICRO = 1_000_000
Amount = str | int | float | Decimal
_SEPARATORS = frozenset("-:@/._")


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True):
    """Micro-USD per million input and output tokens (USD 2.50 per 1M is 2_500_000)."""

    input_micro_usd_per_mtok: int
    output_micro_usd_per_mtok: int

    @classmethod
    def usd(cls, input_usd: Amount, output_usd: Amount) -> "ModelPrice":
        """A price from USD per million tokens, as an operator writes it (`"2.50"`)."""
        return cls(
            input_micro_usd_per_mtok=micro_usd(input_usd),
            output_micro_usd_per_mtok=micro_usd(output_usd),
        )


class CallCost(msgspec.Struct, frozen=True, kw_only=True):
    """One call's tokens and cost, ready to be recorded in a usage event."""

    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    priced: bool
    """False when the model is in no price table: the cost is 0 because it is unknown."""


def micro_usd(amount: Amount) -> int:
    """USD as integer micro-USD, exactly (`"0.15"` is 150_000); floats go through their repr."""
    try:
        value = Decimal(str(amount)) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise ValueError(f"not an amount of USD: {amount!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"not an amount of USD: {amount!r}")
    return int((value * MICRO).to_integral_value(rounding="ROUND_HALF_UP"))


LOCAL_MODELS = frozenset(
    {
        "llama3", "llama3.1", "llama3.2", "llama3.3", "mistral", "mixtral", "qwen2.5", "qwen3",
        "gemma2", "gemma3", "phi3", "phi4", "nomic-embed-text", "mxbai-embed-large",
    }
)  # fmt: skip
"""Names matched only exactly or by Ollama tag: hosted APIs reuse them with suffixes."""
_ZERO = ModelPrice(input_micro_usd_per_mtok=0, output_micro_usd_per_mtok=0)
DEFAULT_PRICES: dict[str, ModelPrice] = {
    # USD per 1M tokens as the providers list them (standard tier, no caching discount);
    # providers change prices: an operator corrects them through the overrides.
    "gpt-4o": ModelPrice.usd("2.50", "10.00"),
    "gpt-4o-mini": ModelPrice.usd("0.15", "0.60"),
    "gpt-4.1": ModelPrice.usd("2.00", "8.00"),
    "gpt-4.1-mini": ModelPrice.usd("0.40", "1.60"),
    "gpt-4.1-nano": ModelPrice.usd("0.10", "0.40"),
    "o3-mini": ModelPrice.usd("1.10", "4.40"),
    "text-embedding-3-small": ModelPrice.usd("0.02", "0"),
    "text-embedding-3-large": ModelPrice.usd("0.13", "0"),
    "claude-3-5-sonnet": ModelPrice.usd("3.00", "15.00"),
    "claude-3-5-haiku": ModelPrice.usd("0.80", "4.00"),
    "claude-sonnet-4": ModelPrice.usd("3.00", "15.00"),
    "claude-opus-4": ModelPrice.usd("15.00", "75.00"),
    "deepseek-chat": ModelPrice.usd("0.27", "1.10"),
    "deepseek-reasoner": ModelPrice.usd("0.55", "2.19"),
    "offline": _ZERO,
    # Models served locally (Ollama, vLLM, llama.cpp) cost nothing per token.
    **dict.fromkeys(LOCAL_MODELS, _ZERO),
}


class PriceTable:
    """Prices by model name: the defaults, with an operator's overrides and additions on top."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = {name.lower(): price for name, price in prices.items()}

    @classmethod
    def default(cls) -> "PriceTable":
        """The built-in table."""
        return cls(DEFAULT_PRICES)

    @classmethod
    def with_overrides(
        cls, overrides: Mapping[str, ModelPrice | Mapping[str, str | int | float]]
    ) -> "PriceTable":
        """The built-in table with `overrides` replacing or adding models.

        An override is a `ModelPrice` or `{"input": "2.50", "output": "10"}` in USD per 1M
        tokens (as JSON settings hold it); a bad entry raises `ValueError` naming the model.
        """
        prices = dict(DEFAULT_PRICES)
        for name, entry in overrides.items():
            prices[name] = entry if isinstance(entry, ModelPrice) else _parse(name, entry)
        return cls(prices)

    def price_for(self, model: str) -> ModelPrice | None:
        """The model's price: exact name, else the longest entry it starts with."""
        name = model.lower()
        if name in self._prices:
            return self._prices[name]
        matches = [
            key
            for key in self._prices
            if name.startswith(key)
            and name[len(key)] in (":" if key in LOCAL_MODELS else _SEPARATORS)
        ]
        return self._prices[max(matches, key=len)] if matches else None

    def is_priced(self, model: str) -> bool:
        """Whether the table knows the model."""
        return self.price_for(model) is not None

    def cost(self, usage: Usage, model: str) -> int:
        """Micro-USD for `usage` on `model`, rounded up; 0 for an unknown model."""
        price = self.price_for(model)
        if price is None:
            return 0
        total = (
            usage.input_tokens * price.input_micro_usd_per_mtok
            + usage.output_tokens * price.output_micro_usd_per_mtok
        )
        return -(-total // MICRO)  # integer ceiling division

    def price_call(self, completion: Completion) -> CallCost:
        """The cost record of a finished call."""
        return CallCost(
            provider=completion.provider,
            model=completion.model,
            input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
            cost_micro_usd=self.cost(completion.usage, completion.model),
            priced=self.is_priced(completion.model),
        )

    def estimate(self, request: CompletionRequest, model: str, *, max_tokens: int) -> int:
        """An upper-side estimate of a call's cost, before it is made.

        The prompt is about characters / 4 tokens; the output is every token the call may
        produce (`request.max_tokens`, else `max_tokens`).
        """
        usage = Usage(
            input_tokens=estimate_tokens(request),
            output_tokens=request.max_tokens or max_tokens,
        )
        return self.cost(usage, model)


def estimate_tokens(request: CompletionRequest) -> int:
    """Prompt tokens, roughly: about four characters per token for English text."""
    chars = sum(
        len(m.content) + sum(len(c.raw_arguments) for c in m.tool_calls) for m in request.messages
    )
    chars += sum(len(t.description) + len(msgspec.json.encode(t.parameters)) for t in request.tools)
    return math.ceil(chars / 4)


def _parse(name: str, entry: Mapping[str, str | int | float]) -> ModelPrice:
    try:
        return ModelPrice.usd(entry["input"], entry["output"])
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"price of {name!r}: give input and output in USD per 1M tokens ({exc})"
        ) from exc
