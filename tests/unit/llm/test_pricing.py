"""Prices per model in integer micro-USD; unknown models cost 0 and say so."""

import pytest

from metachat.llm.ports import ChatMessage, Completion, CompletionRequest, Usage
from metachat.llm.pricing import ModelPrice, PriceTable, estimate_tokens, micro_usd

TABLE = PriceTable.default()


class TestCost:
    def test_cost_is_tokens_times_the_price_per_million_in_micro_usd(self):
        # gpt-4o: USD 2.50 in, 10.00 out per 1M → 1000 * 2.5 + 500 * 10 micro-USD
        assert TABLE.cost(Usage(input_tokens=1000, output_tokens=500), "gpt-4o") == 7_500

    def test_a_dated_model_name_is_priced_as_its_family(self):
        usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
        assert TABLE.cost(usage, "gpt-4o-2024-08-06") == 12_500_000
        assert TABLE.cost(usage, "gpt-4o-mini-2024-07-18") == 750_000  # the longest match wins
        assert TABLE.cost(usage, "claude-sonnet-4-20250514") == 18_000_000

    def test_a_fraction_of_a_micro_dollar_is_rounded_up(self):
        assert TABLE.cost(Usage(input_tokens=1), "gpt-4o-mini") == 1  # 0.15 micro-USD

    def test_offline_and_local_models_are_free_and_priced(self):
        usage = Usage(input_tokens=5000, output_tokens=5000)
        for model in ("offline", "llama3.1:8b", "qwen2.5"):
            assert TABLE.cost(usage, model) == 0
            assert TABLE.is_priced(model)

    def test_an_unknown_model_costs_nothing_but_is_flagged(self):
        usage = Usage(input_tokens=5000, output_tokens=5000)
        assert TABLE.cost(usage, "mystery-model") == 0
        assert not TABLE.is_priced("mystery-model")

    def test_a_hosted_model_named_like_a_local_one_is_not_free(self):
        assert not TABLE.is_priced("mistral-large-latest")
        assert not TABLE.is_priced("gpt-4o2")  # a prefix only counts at a separator

    def test_a_finished_call_is_priced_for_its_usage_event(self):
        completion = Completion(
            text="hi",
            usage=Usage(input_tokens=2000, output_tokens=100),
            model="deepseek-chat",
            provider="deepseek",
        )
        cost = TABLE.price_call(completion)
        assert (cost.provider, cost.model, cost.input_tokens, cost.output_tokens) == (
            "deepseek",
            "deepseek-chat",
            2000,
            100,
        )
        assert cost.cost_micro_usd == 2000 * 0.27 + 100 * 1.10
        assert cost.priced


class TestOverrides:
    def test_an_operator_overrides_and_adds_prices_in_usd_per_million(self):
        table = PriceTable.with_overrides(
            {
                "gpt-4o": {"input": "2.00", "output": 8},
                "acme-llm": {"input": 1, "output": "1.5"},
                "house-model": ModelPrice.usd("0", "0"),
            }
        )
        usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
        assert table.cost(usage, "gpt-4o") == 10_000_000
        assert table.cost(usage, "acme-llm") == 2_500_000
        assert table.is_priced("house-model")
        assert table.cost(usage, "gpt-4o-mini") == 750_000  # the defaults stay

    def test_a_bad_entry_is_refused_naming_the_model(self):
        with pytest.raises(ValueError, match="acme-llm"):
            PriceTable.with_overrides({"acme-llm": {"input": "cheap", "output": "1"}})
        with pytest.raises(ValueError, match="acme-llm"):
            PriceTable.with_overrides({"acme-llm": {"input": "1"}})


class TestMicroUsd:
    def test_amounts_convert_exactly(self):
        assert micro_usd("0.15") == 150_000
        assert micro_usd(0.1) == 100_000  # through the float's repr, not its binary value
        assert micro_usd(25) == 25_000_000

    def test_negative_or_non_numbers_are_refused(self):
        for bad in ("-1", "NaN", "x"):
            with pytest.raises(ValueError, match="not an amount"):
                micro_usd(bad)


class TestEstimate:
    def test_estimates_the_prompt_at_four_characters_a_token_plus_the_whole_output(self):
        request = CompletionRequest(messages=(ChatMessage(role="user", content="x" * 4000),))
        assert estimate_tokens(request) == 1000
        # gpt-4o: 1000 * 2.5 + 600 * 10
        assert TABLE.estimate(request, "gpt-4o", max_tokens=600) == 8_500

    def test_the_request_max_tokens_bounds_the_output(self):
        request = CompletionRequest(
            messages=(ChatMessage(role="user", content="x" * 4),), max_tokens=10
        )
        assert TABLE.estimate(request, "gpt-4o", max_tokens=600) == 3 + 100
