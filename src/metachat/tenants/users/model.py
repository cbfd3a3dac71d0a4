"""The users of one tenant as one aggregate: pure decide/evolve over its events.

All users of a tenant live on one stream, `tenant-users-<tenant id>`. The rules span users (the
last active owner stays; an email is taken once per tenant), so they need one consistency
boundary: one stream per user could not refuse demoting two owners at once. It is a stream of
its own rather than the tenant's stream so user changes never contend with API key writes and
the tenant aggregate stays as it was. A tenant has few users, so replaying the stream is cheap.
"""

import uuid

import msgspec

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from metachat.tenants.commands import (
    ROLES,
    SCOPES,
    ChangeUserRole,
    CreateUser,
    DeactivateUser,
    Role,
)
from metachat.tenants.events import UserCreated, UserDeactivated, UserRoleChanged

Command = CreateUser | ChangeUserRole | DeactivateUser
MAX_USERS = 1000
MAX_EMAIL = 254
MANAGERS: frozenset[Role] = frozenset({"owner", "admin"})


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    """What the aggregate remembers about one user."""

    email: str
    role: Role
    active: bool = True


class UsersState(msgspec.Struct, frozen=True, kw_only=True):
    """Every user of a tenant as the events describe them."""

    users: dict[uuid.UUID, UserState] = msgspec.field(default_factory=dict)

    def active_owners(self) -> int:
        """How many active owners the tenant has."""
        return sum(u.active and u.role == "owner" for u in self.users.values())


def stream_id(tenant_id: uuid.UUID) -> str:
    """The stream holding every user of one tenant."""
    return f"tenant-users-{tenant_id}"


def normalise_email(email: str) -> str:
    """The email as stored: trimmed; compared case-insensitively."""
    cleaned = email.strip()
    local, at, domain = cleaned.rpartition("@")
    if not at or not local or "." not in domain or len(cleaned) > MAX_EMAIL or " " in cleaned:
        raise ValidationError("email must look like name@example.com", field="email")
    return cleaned


def _check_manager(by_role: Role | None, *, touches_owner: bool) -> None:
    """Only owners and admins manage users; only an owner (or a trusted key) touches owners."""
    if by_role is None:
        return
    if by_role not in MANAGERS:
        raise PermissionDeniedError("only owners and admins manage users")
    if touches_owner and by_role != "owner":
        raise PermissionDeniedError("only an owner can create, promote or change owners")


def _check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")


def decide(state: UsersState, command: Command) -> list[Event]:
    """Return the events a command produces from this state, or raise why it cannot."""
    if isinstance(command, CreateUser):
        return _create(state, command)
    user = state.users.get(command.user_id)
    if user is None:
        raise NotFoundError("user not found", user_id=str(command.user_id))
    if isinstance(command, ChangeUserRole):
        role = _check_role(command.role)
        _check_manager(command.by_role, touches_owner="owner" in (role, user.role))
        if not user.active:
            raise ConflictError("a deactivated user keeps its role", user_id=str(command.user_id))
        if role == user.role:
            return []
        _keep_an_owner(state, user)
        return [UserRoleChanged(user_id=command.user_id, role=role, previous_role=user.role)]
    _check_manager(command.by_role, touches_owner=user.role == "owner")
    if not user.active:
        return []  # deactivating twice is a no-op: retries must be safe
    _keep_an_owner(state, user)
    return [UserDeactivated(user_id=command.user_id)]


def _keep_an_owner(state: UsersState, user: UserState) -> None:
    if user.role == "owner" and state.active_owners() <= 1:
        raise ConflictError("the last active owner cannot be demoted or deactivated")


def _create(state: UsersState, command: CreateUser) -> list[Event]:
    role = _check_role(command.role)
    _check_manager(command.by_role, touches_owner=role == "owner")
    if command.user_id in state.users:
        raise ConflictError("a user with this id already exists", user_id=str(command.user_id))
    email = normalise_email(command.email)
    if any(u.email.lower() == email.lower() for u in state.users.values()):
        raise ConflictError("a user with this email already exists", field="email")
    if len(state.users) >= MAX_USERS:
        raise ConflictError(f"a tenant may hold at most {MAX_USERS} users")
    return [UserCreated(user_id=command.user_id, email=email, role=role)]


def evolve(state: UsersState, event: Event) -> UsersState:
    """Apply one event to the state."""
    if isinstance(event, UserCreated):
        user = UserState(email=event.email, role=_check_role(event.role))
        return UsersState(users={**state.users, event.user_id: user})
    if isinstance(event, UserRoleChanged):
        changed = msgspec.structs.replace(state.users[event.user_id], role=_check_role(event.role))
        return UsersState(users={**state.users, event.user_id: changed})
    if isinstance(event, UserDeactivated):
        gone = msgspec.structs.replace(state.users[event.user_id], active=False)
        return UsersState(users={**state.users, event.user_id: gone})
    return state


def replay(events: list[Event]) -> UsersState:
    """Fold events into the state they describe."""
    state = UsersState()
    for event in events:
        state = evolve(state, event)
    return state


AGENT_SCOPES = frozenset({"tenant:read", "conversations:read", "conversations:write"})


def scopes_for(role: Role) -> frozenset[str]:
    """The API scopes a user's role grants: owners and admins get every scope."""
    return frozenset(SCOPES) if role in MANAGERS else AGENT_SCOPES
