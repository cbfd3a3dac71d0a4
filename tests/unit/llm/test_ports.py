"""The vocabulary's own rules: tool-call arguments and message shapes."""

import msgspec
import pytest

from metachat.llm.ports import ChatMessage, ToolCall


class TestToolCallArguments:
    def test_a_json_object_is_parsed(self):
        call = ToolCall.parse(id="c1", name="f", raw_arguments='{"city": "Paris", "days": 3}')
        assert call.arguments == {"city": "Paris", "days": 3}
        assert call.error is None

    def test_empty_arguments_are_an_empty_object(self):
        assert ToolCall.parse(id="c1", name="f", raw_arguments="").arguments == {}

    def test_malformed_json_is_an_error_value(self):
        call = ToolCall.parse(id="c1", name="f", raw_arguments="{'city': 'Paris'}")
        assert call.arguments == {}
        assert call.error is not None
        assert call.error.startswith("invalid JSON")
        assert call.raw_arguments == "{'city': 'Paris'}"

    def test_json_that_is_not_an_object_is_an_error_value(self):
        call = ToolCall.parse(id="c1", name="f", raw_arguments="[1, 2]")
        assert call.error == "arguments must be a JSON object, not list"

    def test_already_parsed_arguments_keep_their_json_text(self):
        call = ToolCall.of(id="t1", name="f", arguments={"a": 1})
        assert msgspec.json.decode(call.raw_arguments) == {"a": 1}


class TestMessageShape:
    def test_only_assistant_messages_carry_tool_calls(self):
        call = ToolCall.of(id="t1", name="f", arguments={})
        ChatMessage(role="assistant", tool_calls=(call,))
        with pytest.raises(ValueError, match="only an assistant"):
            ChatMessage(role="user", content="x", tool_calls=(call,))

    def test_a_tool_message_names_the_call_it_answers(self):
        ChatMessage(role="tool", content="42", tool_call_id="t1")
        with pytest.raises(ValueError, match="tool_call_id"):
            ChatMessage(role="tool", content="42")
        with pytest.raises(ValueError, match="tool_call_id"):
            ChatMessage(role="user", content="hi", tool_call_id="t1")
