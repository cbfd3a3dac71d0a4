"""Login, refresh-token rotation, logout and access-token authentication for tenant users.

Refresh tokens rotate: each refresh marks the presented token used and issues a new one of the
same family. A token presented a second time means it leaked (or a client raced itself), so the
whole family is revoked and everyone holding it must log in again (OAuth 2.0 BCP, RFC 9700).
"""

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from metachat.kernel.errors import AuthenticationError
from metachat.kernel.ids import uuid7
from metachat.kernel.tenancy import tenant_scope
from metachat.tenants.commands import Role
from metachat.tenants.users import passwords, tokens
from metachat.tenants.users.tokens import Claims, TokenSigner

_REFUSED = "invalid email or password"


class TokenPair(msgspec.Struct, frozen=True, kw_only=True):
    """What a login or a refresh answers."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime


class UserIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated user, with the role they hold now (not when the token was issued)."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: Role


async def _issue(
    conn: AsyncConnection,
    signer: TokenSigner,
    identity: UserIdentity,
    *,
    family_id: uuid.UUID,
    now: datetime,
) -> TokenPair:
    """Sign a new pair and store the refresh token's hash in the caller's transaction."""
    access = Claims(
        typ="access",
        exp=int((now + tokens.ACCESS_TTL).timestamp()),
        jti=uuid7(),
        role=identity.role,
        tid=identity.tenant_id,
        sub=identity.user_id,
    )
    refresh = Claims(
        typ="refresh",
        exp=int((now + tokens.REFRESH_TTL).timestamp()),
        jti=uuid7(),
        fam=family_id,
        tid=identity.tenant_id,
        sub=identity.user_id,
    )
    refresh_token = signer.sign(refresh)
    await conn.execute(
        text("""INSERT INTO tenants.refresh_tokens
                (token_hash, tenant_id, user_id, family_id, issued_at, expires_at)
                VALUES (:h, :t, :u, :f, :now, :exp)"""),
        {
            "h": tokens.digest(refresh_token),
            "t": identity.tenant_id,
            "u": identity.user_id,
            "f": family_id,
            "now": now,
            "exp": refresh.expires_at,
        },
    )
    return TokenPair(
        access_token=signer.sign(access),
        refresh_token=refresh_token,
        access_expires_at=access.expires_at,
        refresh_expires_at=refresh.expires_at,
    )


async def login(
    engine: AsyncEngine,
    signer: TokenSigner,
    *,
    tenant_id: uuid.UUID,
    email: str,
    password: str,
    now: datetime,
) -> TokenPair:
    """Check a password and open a session; unknown email and wrong password answer alike."""
    # Each of these functions acts for the tenant it has just learnt (named by the caller, or
    # in a token whose signature was checked): row-level security shows it nothing else.
    if "\x00" in email or "\x00" in password:
        raise AuthenticationError(_REFUSED)  # no such account can exist (PostgreSQL refuses NUL)
    with tenant_scope(tenant_id):
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("""SELECT user_id, password_hash, role, active FROM tenants.users
                            WHERE tenant_id = :t AND lower(email) = lower(:e)"""),
                    {"t": tenant_id, "e": email.strip()},
                )
            ).first()
        # Verify even for an unknown or inactive user, so timing does not tell which exist.
        stored = row.password_hash if row is not None and row.active else None
        if not await passwords.verify_password(stored, password) or row is None:
            raise AuthenticationError(_REFUSED)
        identity = UserIdentity(tenant_id=tenant_id, user_id=row.user_id, role=row.role)
        async with engine.begin() as conn:
            return await _issue(conn, signer, identity, family_id=uuid7(), now=now)


async def refresh(
    engine: AsyncEngine, signer: TokenSigner, *, refresh_token: str, now: datetime
) -> TokenPair:
    """Exchange a refresh token for a new pair; a token used twice revokes its whole family."""
    claims = signer.verify(refresh_token, expected="refresh", now=now)
    with tenant_scope(claims.tid):
        return await _rotate(engine, signer, claims, refresh_token, now=now)


async def _rotate(
    engine: AsyncEngine, signer: TokenSigner, claims: Claims, refresh_token: str, *, now: datetime
) -> TokenPair:
    async with engine.begin() as conn:
        # FOR UPDATE serialises two refreshes of the same token: the second sees `used_at` set.
        row = (
            await conn.execute(
                text("""SELECT r.family_id, r.used_at, r.revoked_at, u.role, u.active
                        FROM tenants.refresh_tokens r JOIN tenants.users u
                          USING (tenant_id, user_id)
                        WHERE r.token_hash = :h FOR UPDATE OF r"""),
                {"h": tokens.digest(refresh_token)},
            )
        ).first()
        if row is None or row.revoked_at is not None or not row.active:
            raise AuthenticationError("invalid or expired token")
        reused = row.used_at is not None
        if not reused:
            await conn.execute(
                text("UPDATE tenants.refresh_tokens SET used_at = :now WHERE token_hash = :h"),
                {"now": now, "h": tokens.digest(refresh_token)},
            )
            identity = UserIdentity(tenant_id=claims.tid, user_id=claims.sub, role=row.role)
            return await _issue(conn, signer, identity, family_id=row.family_id, now=now)
        await _revoke_family(conn, row.family_id, now)
    # Raised after the commit above: the family's revocation must stick.
    raise AuthenticationError("refresh token already used; every session of its family ended")


async def logout(
    engine: AsyncEngine, signer: TokenSigner, *, refresh_token: str, now: datetime
) -> None:
    """End the session a refresh token belongs to (its whole family)."""
    claims = signer.verify(refresh_token, expected="refresh", now=now)
    with tenant_scope(claims.tid):
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    text("SELECT family_id FROM tenants.refresh_tokens WHERE token_hash = :h"),
                    {"h": tokens.digest(refresh_token)},
                )
            ).first()
            if row is None:
                raise AuthenticationError("invalid or expired token")
            await _revoke_family(conn, row.family_id, now)


async def _revoke_family(conn: AsyncConnection, family_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(
        text("""UPDATE tenants.refresh_tokens SET revoked_at = :now
                WHERE family_id = :f AND revoked_at IS NULL"""),
        {"now": now, "f": family_id},
    )


async def authenticate_access(
    engine: AsyncEngine, signer: TokenSigner, token: str, *, now: datetime
) -> UserIdentity:
    """Return the user behind an access token; a deactivated user is refused at once."""
    claims = signer.verify(token, expected="access", now=now)
    with tenant_scope(claims.tid):
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("""SELECT role, active FROM tenants.users
                            WHERE tenant_id = :t AND user_id = :u"""),
                    {"t": claims.tid, "u": claims.sub},
                )
            ).first()
    if row is None or not row.active:
        raise AuthenticationError("invalid or expired token")
    return UserIdentity(tenant_id=claims.tid, user_id=claims.sub, role=row.role)
