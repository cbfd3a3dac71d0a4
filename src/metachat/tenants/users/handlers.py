"""Use cases for tenant users: load the users stream, decide, append, keep `tenants.users` in step.

The password hash lives only in `tenants.users`, written in the same transaction as the events,
so a user exists in the table exactly when its `tenants.user_created` event exists.
"""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.eventstore.envelope import Metadata, Recorded
from metachat.eventstore.postgres import PostgresEventStore
from metachat.kernel.actors import Actor
from metachat.kernel.errors import ConcurrencyError, NotFoundError
from metachat.kernel.ids import uuid7
from metachat.tenants import model as tenant_model
from metachat.tenants.commands import ChangeUserRole, CreateUser, DeactivateUser, Role
from metachat.tenants.events import UserCreated, UserDeactivated, UserRoleChanged
from metachat.tenants.users import model, passwords

_RETRIES = 3


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    """A user as shown to callers: never the password hash."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime


_SELECT = """SELECT tenant_id, user_id, email, role, active, created_at FROM tenants.users"""


async def _tenant_exists(conn: AsyncConnection, tenant_id: uuid.UUID) -> bool:
    row = await conn.execute(
        text("SELECT 1 FROM eventstore.events WHERE stream_id = :s LIMIT 1"),
        {"s": tenant_model.stream_id(tenant_id)},
    )
    return row.first() is not None


async def _apply(conn: AsyncConnection, recorded: list[Recorded], password_hash: str) -> None:
    """Mirror the user events into `tenants.users`, in the append's transaction."""
    for item in recorded:
        event, env = item.event, item.envelope
        params = {"t": env.tenant_id, "at": env.occurred_at}
        if isinstance(event, UserCreated):
            await conn.execute(
                text("""INSERT INTO tenants.users (tenant_id, user_id, email, password_hash,
                        role, active, created_at, updated_at)
                        VALUES (:t, :u, :e, :h, :r, true, :at, :at)"""),
                {
                    **params,
                    "u": event.user_id,
                    "e": event.email,
                    "h": password_hash,
                    "r": event.role,
                },
            )
        elif isinstance(event, UserRoleChanged):
            await conn.execute(
                text("""UPDATE tenants.users SET role = :r, updated_at = :at
                        WHERE tenant_id = :t AND user_id = :u"""),
                {**params, "u": event.user_id, "r": event.role},
            )
        elif isinstance(event, UserDeactivated):
            await conn.execute(
                text("""UPDATE tenants.users SET active = false, updated_at = :at
                        WHERE tenant_id = :t AND user_id = :u"""),
                {**params, "u": event.user_id},
            )
            # A deactivated user's sessions end with it: every refresh token stops working.
            await conn.execute(
                text("""UPDATE tenants.refresh_tokens SET revoked_at = :at
                        WHERE tenant_id = :t AND user_id = :u AND revoked_at IS NULL"""),
                {**params, "u": event.user_id},
            )


async def _execute(
    store: PostgresEventStore,
    tenant_id: uuid.UUID,
    command: model.Command,
    *,
    actor: Actor,
    correlation_id: uuid.UUID,
    password_hash: str = "",
) -> None:
    """Load, decide and append; retry the whole attempt on an optimistic concurrency conflict."""
    for remaining in range(_RETRIES, 0, -1):
        try:
            async with store.engine.begin() as conn:
                if not await _tenant_exists(conn, tenant_id):
                    raise NotFoundError("tenant not found", tenant_id=str(tenant_id))
                stream = model.stream_id(tenant_id)
                recorded = await store.read_stream(stream, conn=conn)
                events = model.decide(model.replay([r.event for r in recorded]), command)
                metadata = Metadata(tenant_id=tenant_id, actor=actor, correlation_id=correlation_id)
                appended = await store.append(
                    stream, events, expected_version=len(recorded), metadata=metadata, conn=conn
                )
                await _apply(conn, appended, password_hash)
        except ConcurrencyError:
            if remaining == 1:
                raise
        else:
            store.committed()
            return


async def create_user(
    tenant_id: uuid.UUID,
    *,
    email: str,
    password: str,
    role: Role,
    by_role: Role | None,
    store: PostgresEventStore,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> UserView:
    """Create a user with a password (hashed with argon2id, never put in an event)."""
    user_id = uuid7()
    command = CreateUser(user_id=user_id, email=email, role=role, by_role=by_role)
    model.decide(model.UsersState(), command)  # refuse bad input before paying for the hash
    password_hash = await passwords.hash_password(password)
    await _execute(
        store,
        tenant_id,
        command,
        actor=actor,
        correlation_id=correlation_id,
        password_hash=password_hash,
    )
    return await get_user(store.engine, tenant_id, user_id)


async def change_role(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    role: Role,
    by_role: Role | None,
    store: PostgresEventStore,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> UserView:
    """Give a user another role (the last active owner keeps theirs)."""
    command = ChangeUserRole(user_id=user_id, role=role, by_role=by_role)
    await _execute(store, tenant_id, command, actor=actor, correlation_id=correlation_id)
    return await get_user(store.engine, tenant_id, user_id)


async def deactivate_user(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    by_role: Role | None,
    store: PostgresEventStore,
    actor: Actor,
    correlation_id: uuid.UUID,
) -> None:
    """Deactivate a user and end their sessions; deactivating again changes nothing."""
    command = DeactivateUser(user_id=user_id, by_role=by_role)
    await _execute(store, tenant_id, command, actor=actor, correlation_id=correlation_id)


async def get_user(engine: AsyncEngine, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserView:
    """Return one user of the tenant; another tenant's user is simply not found."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"{_SELECT} WHERE tenant_id = :t AND user_id = :u"),
                {"t": tenant_id, "u": user_id},
            )
        ).first()
    if row is None:
        raise NotFoundError("user not found", user_id=str(user_id))
    return UserView(**row._asdict())


async def list_users(engine: AsyncEngine, tenant_id: uuid.UUID) -> list[UserView]:
    """Return every user of the tenant, deactivated ones included, in creation order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"{_SELECT} WHERE tenant_id = :t ORDER BY created_at, user_id"), {"t": tenant_id}
        )
        return [UserView(**row._asdict()) for row in rows]
