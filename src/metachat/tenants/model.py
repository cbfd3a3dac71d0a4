"""The tenant aggregate: pure decide/evolve over its events."""

import uuid
from datetime import datetime

import msgspec

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ConflictError, NotFoundError, ValidationError
from metachat.tenants.commands import SCOPES, CreateTenant, IssueApiKey, RenameTenant, RevokeApiKey
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked, TenantCreated, TenantRenamed

Command = CreateTenant | RenameTenant | IssueApiKey | RevokeApiKey
MAX_NAME = 200
MAX_ACTIVE_KEYS = 50


class KeyState(msgspec.Struct, frozen=True, kw_only=True):
    """What the aggregate remembers about one API key."""

    name: str
    active: bool
    expires_at: datetime | None = None


class TenantState(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant as its events describe it."""

    tenant_id: uuid.UUID | None = None
    name: str = ""
    keys: dict[uuid.UUID, KeyState] = msgspec.field(default_factory=dict)

    @property
    def exists(self) -> bool:
        """True once the tenant has been created."""
        return self.tenant_id is not None


def stream_id(tenant_id: uuid.UUID) -> str:
    """The stream holding one tenant's events."""
    return f"tenant-{tenant_id}"


def _check_name(name: str, what: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise ValidationError(f"{what} must be 1 to {MAX_NAME} characters", field="name")
    return cleaned


def decide(state: TenantState, command: Command) -> list[Event]:
    """Return the events a command produces from this state, or raise why it cannot."""
    if isinstance(command, CreateTenant):
        if state.exists:
            raise ConflictError("tenant already exists", tenant_id=str(command.tenant_id))
        return [TenantCreated(tenant_id=command.tenant_id, name=_check_name(command.name, "name"))]
    if not state.exists:
        raise NotFoundError("tenant not found")
    if isinstance(command, RenameTenant):
        name = _check_name(command.name, "name")
        return [] if name == state.name else [TenantRenamed(name=name)]
    if isinstance(command, IssueApiKey):
        return _issue(state, command)
    key = state.keys.get(command.key_id)
    if key is None:
        raise NotFoundError("API key not found", key_id=str(command.key_id))
    if not key.active:
        return []  # revoking twice is a no-op, not an error: retries must be safe
    return [ApiKeyRevoked(key_id=command.key_id, reason=command.reason)]


def _issue(state: TenantState, command: IssueApiKey) -> list[Event]:
    if command.key_id in state.keys:
        raise ConflictError("an API key with this id already exists", key_id=str(command.key_id))
    unknown = sorted(set(command.scopes) - set(SCOPES))
    if unknown or not command.scopes:
        raise ValidationError(f"unknown or empty scopes: {unknown}", field="scopes")
    if sum(k.active for k in state.keys.values()) >= MAX_ACTIVE_KEYS:
        raise ConflictError(f"a tenant may hold at most {MAX_ACTIVE_KEYS} active keys")
    events: list[Event] = [
        ApiKeyIssued(
            key_id=command.key_id,
            name=_check_name(command.name, "key name"),
            prefix=command.prefix,
            last_four=command.last_four,
            scopes=sorted(set(command.scopes)),
            expires_at=command.expires_at,
            replaces=command.replaces,
        )
    ]
    if command.replaces is not None:
        old = state.keys.get(command.replaces)
        if old is None or not old.active:
            raise NotFoundError(
                "API key to rotate not found or revoked", key_id=str(command.replaces)
            )
        events.append(ApiKeyRevoked(key_id=command.replaces, reason="rotated"))
    return events


def evolve(state: TenantState, event: Event) -> TenantState:
    """Apply one event to the state."""
    if isinstance(event, TenantCreated):
        return msgspec.structs.replace(state, tenant_id=event.tenant_id, name=event.name)
    if isinstance(event, TenantRenamed):
        return msgspec.structs.replace(state, name=event.name)
    if isinstance(event, ApiKeyIssued):
        key = KeyState(name=event.name, active=True, expires_at=event.expires_at)
        return msgspec.structs.replace(state, keys={**state.keys, event.key_id: key})
    if isinstance(event, ApiKeyRevoked):
        old = state.keys[event.key_id]
        keys = {**state.keys, event.key_id: msgspec.structs.replace(old, active=False)}
        return msgspec.structs.replace(state, keys=keys)
    return state


def replay(events: list[Event]) -> TenantState:
    """Fold events into the state they describe."""
    state = TenantState()
    for event in events:
        state = evolve(state, event)
    return state
