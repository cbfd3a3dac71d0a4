"""The assistant-settings aggregate and the sealing of providers' keys."""

import uuid

import pytest
from cryptography.exceptions import InvalidTag

from metachat.kernel.errors import ValidationError
from metachat.tenants.assistant import model
from metachat.tenants.assistant.crypto import SecretBox
from metachat.tenants.commands import (
    AssistantSettings,
    ConfigureAssistant,
    ModelChoice,
    RemoveProviderKey,
    SetProviderKey,
)
from metachat.tenants.events import AssistantConfigured, ProviderKeyRemoved, ProviderKeySet

OPENAI = AssistantSettings(primary=ModelChoice(kind="openai", model="gpt-4o-mini"))


def _with_key(provider: str = "openai") -> model.AssistantState:
    return model.replay([ProviderKeySet(provider=provider, last_four="abcd")])  # type: ignore[arg-type]


class TestConfigure:
    def test_the_defaults_need_no_key_and_change_nothing(self) -> None:
        assert (
            model.decide(model.AssistantState(), ConfigureAssistant(settings=AssistantSettings()))
            == []
        )

    def test_a_model_needs_its_providers_key(self) -> None:
        with pytest.raises(ValidationError, match="store a key for openai"):
            model.decide(model.AssistantState(), ConfigureAssistant(settings=OPENAI))
        assert model.decide(_with_key(), ConfigureAssistant(settings=OPENAI)) == [
            AssistantConfigured(settings=OPENAI)
        ]

    def test_a_fallback_needs_its_key_too(self) -> None:
        settings = AssistantSettings(fallbacks=(ModelChoice(kind="anthropic", model="claude"),))
        with pytest.raises(ValidationError) as refused:
            model.decide(_with_key(), ConfigureAssistant(settings=settings))
        assert refused.value.extra["field"] == "fallbacks[0]"

    def test_local_servers_need_no_key(self) -> None:
        local = AssistantSettings(
            primary=ModelChoice(kind="ollama", model="llama3", base_url="http://ollama:11434/v1")
        )
        assert model.decide(model.AssistantState(), ConfigureAssistant(settings=local))


class TestKeys:
    def test_removing_a_key_in_use_is_refused(self) -> None:
        state = model.evolve(_with_key(), AssistantConfigured(settings=OPENAI))
        with pytest.raises(ValidationError):
            model.decide(state, RemoveProviderKey(provider="openai"))

    def test_removing_twice_is_a_no_op(self) -> None:
        state = _with_key()
        assert model.decide(state, RemoveProviderKey(provider="openai")) == [
            ProviderKeyRemoved(provider="openai")
        ]
        gone = model.evolve(state, ProviderKeyRemoved(provider="openai"))
        assert gone.keys == {}
        assert model.decide(gone, RemoveProviderKey(provider="openai")) == []

    def test_the_offline_model_takes_no_key(self) -> None:
        with pytest.raises(ValidationError):
            model.decide(model.AssistantState(), SetProviderKey(provider="offline", last_four="x"))


class TestSecretBox:
    def test_opens_what_it_sealed_for_the_same_tenant_and_provider(self) -> None:
        box, tenant = SecretBox("k" * 32), uuid.uuid4()
        sealed = box.seal("sk-secret", tenant_id=tenant, name="openai")
        assert b"sk-secret" not in sealed
        assert box.open(sealed, tenant_id=tenant, name="openai") == "sk-secret"
        assert box.seal("sk-secret", tenant_id=tenant, name="openai") != sealed  # fresh nonce

    @pytest.mark.parametrize("other", ["tenant", "provider", "secret"])
    def test_a_value_moved_or_opened_with_another_key_does_not_open(self, other: str) -> None:
        box, tenant = SecretBox("k" * 32), uuid.uuid4()
        sealed = box.seal("sk-secret", tenant_id=tenant, name="openai")
        opener = SecretBox("q" * 32) if other == "secret" else box
        with pytest.raises(InvalidTag):
            opener.open(
                sealed,
                tenant_id=uuid.uuid4() if other == "tenant" else tenant,
                name="anthropic" if other == "provider" else "openai",
            )

    def test_never_shows_itself(self) -> None:
        assert "k" * 32 not in repr(SecretBox("k" * 32))
