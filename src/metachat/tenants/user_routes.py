"""HTTP routes for tenant users: login and sessions, user management, `/me` and the audit trail.

`AUTH_ROUTES` take no bearer (they are how a user gets one) and are mounted outside the guarded
`/v1` router; `ROUTES` sit behind it with a declared scope each. Every lookup is scoped to the
caller's tenant, so another tenant's user id is simply not found.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from metachat.tenants import audit
from metachat.tenants.commands import Role
from metachat.tenants.handlers import Principal, TenantDeps
from metachat.tenants.users import handlers, sessions
from metachat.tenants.users.handlers import UserView
from metachat.tenants.users.tokens import TokenSigner

READ = {"scope": "tenant:read"}
ADMIN = {"scope": "tenant:admin"}
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, examples=["ada@example.com"])]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class LoginIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A user's credentials."""

    tenant_id: uuid.UUID
    email: Email
    password: Password


class RefreshIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A refresh token, to exchange (refresh) or to end its session (logout)."""

    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class CreateUserIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new user. Only an owner (or an API key) can create an owner."""

    email: Email
    password: Annotated[str, msgspec.Meta(min_length=12, max_length=1024)]
    role: Role = "agent"


class ChangeRoleIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A user's new role."""

    role: Role


class UserOut(msgspec.Struct, frozen=True, kw_only=True):
    """A user of the tenant, as the API shows it (`id`, like every other resource)."""

    id: uuid.UUID
    email: str
    role: Role
    active: bool
    created_at: datetime

    @classmethod
    def of(cls, view: UserView) -> "UserOut":
        """The answer for a user view."""
        return cls(
            id=view.user_id,
            email=view.email,
            role=view.role,
            active=view.active,
            created_at=view.created_at,
        )


class MeOut(msgspec.Struct, frozen=True, kw_only=True):
    """The caller: a user (with `user`) or an API key (with `key_id`)."""

    tenant_id: uuid.UUID
    kind: str
    scopes: list[str]
    key_id: uuid.UUID | None = None
    user: UserOut | None = None


class AuthController(Controller):
    """Sessions of tenant users: no bearer needed."""

    path = "/v1/auth"
    tags = ["auth"]  # noqa: RUF012 - Litestar's layer attribute

    @post("/login", status_code=200, summary="Log in with email and password")
    async def login(
        self,
        data: JSONBody[LoginIn],
        tenant_deps: NamedDependency[TenantDeps],
        token_signer: NamedDependency[TokenSigner],
    ) -> sessions.TokenPair:
        """Return an access token (15 min) and a refresh token (30 days), or the same 401."""
        return await sessions.login(
            tenant_deps.store.engine,
            token_signer,
            tenant_id=data.tenant_id,
            email=data.email,
            password=data.password,
            now=datetime.now(UTC),
        )

    @post("/refresh", status_code=200, summary="Exchange a refresh token for a new pair")
    async def refresh(
        self,
        data: JSONBody[RefreshIn],
        tenant_deps: NamedDependency[TenantDeps],
        token_signer: NamedDependency[TokenSigner],
    ) -> sessions.TokenPair:
        """Rotate: the presented token stops working; presenting it again ends the session."""
        return await sessions.refresh(
            tenant_deps.store.engine,
            token_signer,
            refresh_token=data.refresh_token,
            now=datetime.now(UTC),
        )

    @post("/logout", status_code=204, summary="End a session")
    async def logout(
        self,
        data: JSONBody[RefreshIn],
        tenant_deps: NamedDependency[TenantDeps],
        token_signer: NamedDependency[TokenSigner],
    ) -> None:
        """Revoke the refresh token's whole family; access tokens expire on their own."""
        await sessions.logout(
            tenant_deps.store.engine,
            token_signer,
            refresh_token=data.refresh_token,
            now=datetime.now(UTC),
        )


class UserController(Controller):
    """The tenant's users."""

    path = "/users"
    tags = ["users"]  # noqa: RUF012 - Litestar's layer attribute

    @post("/", opt=ADMIN, status_code=201, summary="Create a user")
    async def create_user(
        self,
        data: JSONBody[CreateUserIn],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> UserOut:
        """Create a user of the caller's tenant; the password is stored as an argon2id hash."""
        view = await handlers.create_user(
            principal.tenant_id,
            email=data.email,
            password=data.password,
            role=data.role,
            by_role=principal.role,
            store=tenant_deps.store,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return UserOut.of(view)

    @get("/", opt=READ, summary="List users")
    async def list_users(
        self, principal: NamedDependency[Principal], tenant_deps: NamedDependency[TenantDeps]
    ) -> list[UserOut]:
        """Every user of the tenant, deactivated ones included."""
        views = await handlers.list_users(tenant_deps.store.engine, principal.tenant_id)
        return [UserOut.of(view) for view in views]

    @get("/{user_id:uuid}", opt=READ, summary="Show a user")
    async def get_user(
        self,
        user_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
    ) -> UserOut:
        """One user of the caller's tenant."""
        view = await handlers.get_user(tenant_deps.store.engine, principal.tenant_id, user_id)
        return UserOut.of(view)

    @patch("/{user_id:uuid}", opt=ADMIN, summary="Change a user's role")
    async def change_role(
        self,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[ChangeRoleIn],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> UserOut:
        """Change the role; the last active owner cannot be demoted."""
        view = await handlers.change_role(
            principal.tenant_id,
            user_id,
            role=data.role,
            by_role=principal.role,
            store=tenant_deps.store,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return UserOut.of(view)

    @delete("/{user_id:uuid}", opt=ADMIN, status_code=204, summary="Deactivate a user")
    async def deactivate(
        self,
        user_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        tenant_deps: NamedDependency[TenantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Deactivate for good and end the user's sessions; the last active owner stays."""
        await handlers.deactivate_user(
            principal.tenant_id,
            user_id,
            by_role=principal.role,
            store=tenant_deps.store,
            actor=principal.actor,
            correlation_id=correlation_id,
        )


@get("/me", opt=READ, tags=["users"], summary="The caller")
async def me(
    principal: NamedDependency[Principal], tenant_deps: NamedDependency[TenantDeps]
) -> MeOut:
    """Who is calling: the user (with their role) or the API key, and the scopes it holds."""
    user = None
    if principal.user_id is not None:
        user = UserOut.of(
            await handlers.get_user(
                tenant_deps.store.engine, principal.tenant_id, principal.user_id
            )
        )
    return MeOut(
        tenant_id=principal.tenant_id,
        kind=principal.actor.kind,
        scopes=sorted(principal.scopes),
        key_id=principal.key_id,
        user=user,
    )


@get("/audit", opt=ADMIN, tags=["audit"], summary="The tenant's audit trail")
async def audit_trail(
    principal: NamedDependency[Principal],
    tenant_deps: NamedDependency[TenantDeps],
    before: Annotated[int | None, Parameter(ge=1, description="Cursor: `next_cursor`")] = None,
    limit: Annotated[int, Parameter(ge=1, le=audit.MAX_PAGE)] = 50,
) -> audit.AuditPage:
    """Administrative events (tenant, API keys, users) newest first, with their actors."""
    return await audit.read_audit(
        tenant_deps.store.engine, principal.tenant_id, before=before, limit=limit
    )


AUTH_ROUTES = (AuthController,)
ROUTES = (UserController, me, audit_trail)
