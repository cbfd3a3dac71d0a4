"""`Idempotency-Key` on every POST under `/v1`: a repeat gets the first answer, byte for byte.

The first request with a key claims it (a row with no answer yet, committed in its own
transaction so that concurrent repeats see it at once), runs, and stores its answer; a repeat of
a completed request gets that answer with `Idempotent-Replayed: true`. A repeat that arrives while
the first is still running waits for it, then answers 409 `idempotency_in_progress` with
`Retry-After` if it waited too long. The same key with another method, path or body is refused
(422 `idempotency_key_reused`). Keys live 24 hours; each claim prunes its tenant's expired ones.

Answers that mean the request never ran (403, 429) and server errors (5xx) release the key, so
the client can try again with the same key. Storing the first answer is retried through a short
database outage, since the request's effects are committed by then. The caller is
authenticated here too (the route's guard runs inside this middleware) because keys are scoped
to a tenant.
"""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from metachat.api.errors import problem_response
from metachat.kernel.errors import AuthenticationError, ValidationError
from metachat.kernel.tenancy import tenant_scope

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
WAIT_SECONDS = 10.0
"""How long a repeat waits for the first request before answering 409."""
_POLL_SECONDS = 0.02
_RELEASED = frozenset({403, 429})
_STORE_ATTEMPTS = 5

Identify = Callable[[str], Awaitable[uuid.UUID]]
"""Maps a bearer token to its tenant, or raises AuthenticationError."""


class IdempotencyKeyReusedError(ValidationError):
    """The key was first used for another request."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused for a different request"


class _Stored:
    """A claimed key's row: the request it belongs to and, once done, its answer."""

    def __init__(self, row: Any) -> None:
        self.method: str = row.method
        self.path: str = row.path
        self.request_hash: bytes = bytes(row.request_hash)
        self.status: int | None = row.status
        self.headers: list[list[str]] = row.headers or []
        self.body: bytes = bytes(row.body or b"")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1")).strip()
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already read body to the app once, then defers to the client."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class IdempotencyStore:
    """The `api.idempotency_keys` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(
        self, tenant_id: uuid.UUID, key: str, method: str, path: str, digest: bytes
    ) -> bool:
        """Claim a key for this request; False when it is already taken."""
        # Committed on its own before the request runs: a concurrent repeat must see the claim
        # (and wait for the answer) rather than run the request a second time.
        async with self.engine.begin() as conn:
            await conn.execute(
                text("""DELETE FROM api.idempotency_keys
                        WHERE tenant_id = :t AND created_at < now() - interval '24 hours'"""),
                {"t": tenant_id},
            )
            claimed = await conn.scalar(
                text("""INSERT INTO api.idempotency_keys
                        (tenant_id, key, method, path, request_hash) VALUES (:t, :k, :m, :p, :h)
                        ON CONFLICT DO NOTHING RETURNING true"""),
                {"t": tenant_id, "k": key, "m": method, "p": path, "h": digest},
            )
        return bool(claimed)

    async def get(self, tenant_id: uuid.UUID, key: str) -> _Stored | None:
        """Return a key's row, or None when it was released."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("""SELECT method, path, request_hash, status, headers, body
                            FROM api.idempotency_keys WHERE tenant_id = :t AND key = :k"""),
                    {"t": tenant_id, "k": key},
                )
            ).first()
        return None if row is None else _Stored(row)

    async def complete(
        self, tenant_id: uuid.UUID, key: str, status: int, headers: list[list[str]], body: bytes
    ) -> None:
        """Store the first request's answer."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("""UPDATE api.idempotency_keys
                        SET status = :s, headers = CAST(:hd AS jsonb), body = :b,
                            completed_at = now()
                        WHERE tenant_id = :t AND key = :k"""),
                {
                    "s": status,
                    "hd": msgspec.json.encode(headers).decode(),
                    "b": body,
                    "t": tenant_id,
                    "k": key,
                },
            )

    async def release(self, tenant_id: uuid.UUID, key: str) -> None:
        """Give up an unanswered claim, so the key can be used again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("""DELETE FROM api.idempotency_keys
                        WHERE tenant_id = :t AND key = :k AND status IS NULL"""),
                {"t": tenant_id, "k": key},
            )


class _Capture:
    """Collects the app's answer so it can be stored before the client sees it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.status = 500
        self.headers: list[list[str]] = []
        self.body = b""

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", ())
            ]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


class IdempotencyMiddleware(ASGIMiddleware):
    """Applies `Idempotency-Key` to every POST of the router it is installed on."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, engine: AsyncEngine, identify: Identify) -> None:
        self.identify = identify
        self.keys = IdempotencyStore(engine)

    def __deepcopy__(self, memo: dict[int, Any]) -> "IdempotencyMiddleware":
        # Litestar deep-copies a router when it is registered; this middleware holds a shared
        # engine (connection pool), which must be shared, not copied.
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Run the request once per key; replay the stored answer to every repeat."""
        key = _header(scope, b"idempotency-key")
        is_post = scope.get("method") == "POST"
        tenant_id = await self._tenant(scope) if is_post and key is not None else None
        if key is None or tenant_id is None:
            await next_app(scope, receive, send)
            return
        # The keys table is under row-level security: its reads and writes act for the caller.
        with tenant_scope(tenant_id):
            await self._once(scope, receive, send, next_app, tenant_id=tenant_id, key=key)

    async def _once(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        *,
        tenant_id: uuid.UUID,
        key: str,
    ) -> None:
        if not 0 < len(key) <= MAX_KEY:
            raise ValidationError(f"{HEADER} must be 1 to {MAX_KEY} characters", field=HEADER)
        body = await _read_body(receive)
        path = scope["path"]
        digest = hashlib.sha256(b"POST " + path.encode() + b"\n" + body).digest()
        deadline = time.monotonic() + WAIT_SECONDS
        while not await self.keys.claim(tenant_id, key, "POST", path, digest):
            stored = await self.keys.get(tenant_id, key)
            if stored is None:
                continue  # the first request released the key: claim it again
            if (stored.method, stored.path, stored.request_hash) != ("POST", path, digest):
                raise IdempotencyKeyReusedError(
                    f"this {HEADER} was used for a different request", field=HEADER
                )
            if stored.status is not None:
                await _replay(stored, stored.status, send)
                return
            if time.monotonic() >= deadline:
                await _in_progress(scope, receive, send)
                return
            # The first request is still running: its answer is what this repeat must get.
            await asyncio.sleep(_POLL_SECONDS)
        await self._first(
            scope, _replaying(body, receive), send, next_app, tenant_id=tenant_id, key=key
        )

    async def _tenant(self, scope: Scope) -> uuid.UUID | None:
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None  # the route's guard answers 401
        try:
            return await self.identify(token.strip())
        except AuthenticationError:
            return None

    async def _first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        next_app: ASGIApp,
        *,
        tenant_id: uuid.UUID,
        key: str,
    ) -> None:
        capture = _Capture()
        try:
            await next_app(scope, receive, capture)
        except BaseException:
            await self.keys.release(tenant_id, key)
            raise
        if capture.status >= 500 or capture.status in _RELEASED:  # noqa: PLR2004
            await self.keys.release(tenant_id, key)
        else:
            await _stubbornly(
                lambda: self.keys.complete(
                    tenant_id, key, capture.status, capture.headers, capture.body
                )
            )
        for message in capture.messages:
            await send(message)


async def _stubbornly(store_answer: Callable[[], Awaitable[None]]) -> None:
    """Store the first answer, retrying a failure of the database for a few seconds.

    The request's effects are committed by now: an answer that is not stored would leave the
    key claimed and unanswered, and every repeat would get 409 until the key expires. A few
    retries with backoff ride out a dropped connection or a failover; if the database stays
    away, the error reaches the client (a 500) and the key stays claimed, which refuses a
    second run rather than risk doing the change twice.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(DBAPIError),
        stop=stop_after_attempt(_STORE_ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
        reraise=True,
    ):
        with attempt:
            await store_answer()


async def _replay(stored: _Stored, status: int, send: Send) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers]
    headers.append((REPLAYED.lower().encode(), b"true"))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    body: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": stored.body,
        "more_body": False,
    }
    await send(start)
    await send(body)


async def _in_progress(scope: Scope, receive: Receive, send: Send) -> None:
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = problem_response(
        request,
        status=409,
        code="idempotency_in_progress",
        title="A request with this idempotency key is still running",
        detail=f"The first request with this {HEADER} has not finished; retry later.",
        headers={"Retry-After": "1"},
    )
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)
