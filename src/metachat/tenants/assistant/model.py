"""The assistant-settings aggregate of a tenant: pure decide/evolve.

One stream per tenant (`assistant-<tenant id>`) holds the settings as replaced over time and
which providers have a key. The keys themselves never enter an event: they are sealed into
`tenants.provider_keys` in the same transaction as `ProviderKeySet` (see `handlers`).
"""

import uuid

import msgspec

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ValidationError
from metachat.tenants.commands import (
    KEYLESS_PROVIDERS,
    AssistantSettings,
    ConfigureAssistant,
    ModelChoice,
    ProviderKind,
    RemoveProviderKey,
    SetProviderKey,
)
from metachat.tenants.events import AssistantConfigured, ProviderKeyRemoved, ProviderKeySet

Command = ConfigureAssistant | SetProviderKey | RemoveProviderKey


class AssistantState(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's assistant as its events describe it; the defaults until configured."""

    settings: AssistantSettings = msgspec.field(default_factory=AssistantSettings)
    keys: dict[str, str] = msgspec.field(default_factory=dict)
    """Provider → last four characters of its key."""


def stream_id(tenant_id: uuid.UUID) -> str:
    """The stream holding one tenant's assistant settings."""
    return f"assistant-{tenant_id}"


def _check_model(choice: ModelChoice, keys: dict[str, str], field: str) -> None:
    if choice.kind == "openai_compatible" and choice.base_url is None:
        raise ValidationError("an openai_compatible model needs a base_url", field=field)
    if choice.kind == "offline" and choice.base_url is not None:
        raise ValidationError("the offline model takes no base_url", field=field)
    if choice.kind not in KEYLESS_PROVIDERS and choice.kind not in keys:
        raise ValidationError(
            f"store a key for {choice.kind} first (PUT /v1/assistant/keys/{choice.kind})",
            field=field,
        )


def decide(state: AssistantState, command: Command) -> list[Event]:
    """Return the events a command produces, or raise why it cannot."""
    if isinstance(command, ConfigureAssistant):
        settings = command.settings
        _check_model(settings.primary, state.keys, "primary")
        for index, fallback in enumerate(settings.fallbacks):
            _check_model(fallback, state.keys, f"fallbacks[{index}]")
        return [] if settings == state.settings else [AssistantConfigured(settings=settings)]
    if isinstance(command, SetProviderKey):
        if command.provider == "offline":
            raise ValidationError("the offline model needs no key", field="provider")
        return [ProviderKeySet(provider=command.provider, last_four=command.last_four)]
    if command.provider not in state.keys:
        return []  # removing a key twice is a no-op: retries must be safe
    if command.provider in _in_use(state.settings) and command.provider not in KEYLESS_PROVIDERS:
        raise ValidationError(
            f"{command.provider} is in the assistant's model chain: change the settings first",
            field="provider",
        )
    return [ProviderKeyRemoved(provider=command.provider)]


def _in_use(settings: AssistantSettings) -> set[ProviderKind]:
    return {settings.primary.kind, *(choice.kind for choice in settings.fallbacks)}


def evolve(state: AssistantState, event: Event) -> AssistantState:
    """Apply one event to the state."""
    if isinstance(event, AssistantConfigured):
        return msgspec.structs.replace(state, settings=event.settings)
    if isinstance(event, ProviderKeySet):
        return msgspec.structs.replace(state, keys={**state.keys, event.provider: event.last_four})
    if isinstance(event, ProviderKeyRemoved):
        keys = {k: v for k, v in state.keys.items() if k != event.provider}
        return msgspec.structs.replace(state, keys=keys)
    return state


def replay(events: list[Event]) -> AssistantState:
    """Fold events into the state they describe."""
    state = AssistantState()
    for event in events:
        state = evolve(state, event)
    return state
