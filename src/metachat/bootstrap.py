"""Composition root: builds every adapter once from settings. No business logic lives here."""

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from metachat.conversations import ConversationDeps
from metachat.conversations import events as conversation_events
from metachat.conversations.cache import StreamCache
from metachat.conversations.live import LivePublisher
from metachat.database.embedded import start_embedded
from metachat.database.engine import create_call_pool, create_engine, libpq_url
from metachat.database.migrate import check_schema
from metachat.eventstore.notify import Notifier
from metachat.eventstore.postgres import PostgresEventStore
from metachat.eventstore.registry import EventRegistry
from metachat.llm import CallRateLimiter, LLMGateway, PriceTable
from metachat.orchestrator import OrchestratorDeps
from metachat.orchestrator import events as orchestrator_events
from metachat.orchestrator.http_tools import HttpToolRunner
from metachat.orchestrator.locks import ConversationLocks
from metachat.orchestrator.mcp import McpProcesses
from metachat.orchestrator.models import Models, public_url_guard
from metachat.orchestrator.tenant_tools import TenantTools
from metachat.orchestrator.usage import UsageRecorder
from metachat.settings import Secret, Settings
from metachat.tenants import AssistantCache, AssistantDeps
from metachat.tenants import events as tenant_events
from metachat.tenants.assistant.crypto import SecretBox
from metachat.tenants.handlers import TenantDeps
from metachat.tenants.keycache import KeyCache

log = structlog.get_logger()


class ScopedDeps(msgspec.Struct, frozen=True, kw_only=True):
    """The stores as the API uses them: bound by row-level security, one tenant per transaction.

    Their engine connects as `metachat_app` (no BYPASSRLS) and starts every transaction by
    setting the context's tenant (`database.tenancy`); it opens no connection until first used.
    """

    engine: AsyncEngine
    store: PostgresEventStore
    tenants: TenantDeps


class Deps(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the entry points hand out: built once per process, closed by `close`.

    `engine`, `store` and `tenants` act as the database's owner, for every tenant: the workers,
    the CLI and the operator's endpoints use them. The tenant-facing API uses `scoped`.
    """

    settings: Settings
    database_url: str
    engine: AsyncEngine
    registry: EventRegistry
    notifier: Notifier
    store: PostgresEventStore
    tenants: TenantDeps
    scoped: ScopedDeps
    secrets: SecretBox
    """Seals and opens tenants' secrets at rest (providers' API keys)."""

    async def close(self) -> None:
        """Release connections and background tasks."""
        await self.notifier.stop()
        if self.tenants.keys is not None:
            await self.tenants.keys.close()
        for calls in (self.scoped.store.calls, self.store.calls):
            if calls is not None:
                await calls.close()
        await self.scoped.engine.dispose()
        await self.engine.dispose()


def build_registry() -> EventRegistry:
    """The one registry of every event type the platform can emit."""
    return EventRegistry(
        [*tenant_events.EVENTS, *conversation_events.EVENTS, *orchestrator_events.EVENTS]
    )


def resolve_database_url(settings: Settings) -> str:
    """The configured database, or the embedded one started on demand."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.data_dir)


def resolve_secrets(settings: Settings) -> Settings:
    """Fill missing secrets outside production with throwaway ones kept in the data folder.

    Production never reaches the generation branch: `load_settings` already refused to start
    without every secret. Development keeps the generated values in `<data_dir>/dev-secrets.json`
    so that API keys keep working across restarts, and says so in the log.
    """
    if settings.secret_key and settings.api_key_pepper:
        return settings
    if settings.is_production:
        raise RuntimeError("production settings without secrets")  # load_settings prevents this
    path = settings.data_dir / "dev-secrets.json"
    stored = _read_dev_secrets(path)
    changed = False
    for name in ("secret_key", "api_key_pepper"):
        if name not in stored:
            stored[name] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored))
        path.chmod(0o600)
    log.warning("development_secrets_in_use", path=str(path), env=settings.env)
    return msgspec.structs.replace(
        settings,
        secret_key=settings.secret_key or Secret(stored["secret_key"]),
        api_key_pepper=settings.api_key_pepper or Secret(stored["api_key_pepper"]),
    )


def _read_dev_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


async def build(
    settings: Settings, *, database_url: str | None = None, pool_size: int = 10
) -> Deps:
    """Build the process's dependencies; start the post-commit notifier.

    Raises SchemaOutOfDateError when the database needs `metachat db upgrade`.
    """
    settings = resolve_secrets(settings)
    url = database_url or resolve_database_url(settings)
    # Steady, like the API's below: the same 20 connections at most as `pool_size` plus an
    # overflow of as many, but kept once opened. The consumers role opened and closed overflow
    # connections in bursts under load (251 sessions in a 100 messages/s run), each a backend
    # start and a cold statement cache exactly when the process was busiest.
    engine = create_engine(url, pool_size=2 * pool_size, max_overflow=0)
    try:
        await check_schema(engine)
    except Exception:
        await engine.dispose()
        raise
    registry = build_registry()
    notifier = Notifier(libpq_url(url))
    await notifier.start()
    # Each store's one-statement transactions (the append of a command decided from its stream
    # cache, the catch-up read) take autocommit driver connections from a pool of their own.
    calls = create_call_pool(url, size=pool_size)
    scoped_calls = create_call_pool(url, size=pool_size, tenant_scoped=True)
    for pool in (calls, scoped_calls):
        await pool.open(wait=False)
    store = PostgresEventStore(engine, registry, notifier, calls=calls)
    pepper = settings.api_key_pepper.value if settings.api_key_pepper else ""
    if settings.secret_key is None:
        raise RuntimeError("no secret key: resolve_secrets provides one outside production")
    # The API's pool is steady: twice the size and no overflow. Overflow connections are opened
    # in a burst and closed as soon as they come back, so a busy API paid for a connection's
    # set-up exactly when it was busiest (docs/benchmarks.md); a request now waits for a pooled
    # one instead, and an API request holds one for a round trip or a few. (API requests pass
    # their connection down instead of taking a second one, so a full pool only queues them.)
    scoped_engine = create_engine(url, pool_size=2 * pool_size, max_overflow=0, tenant_scoped=True)
    scoped_store = PostgresEventStore(scoped_engine, registry, notifier, calls=scoped_calls)
    key_cache = KeyCache(libpq_url(url))
    return Deps(
        settings=settings,
        database_url=url,
        engine=engine,
        registry=registry,
        notifier=notifier,
        store=store,
        tenants=TenantDeps(store=store, pepper=pepper, keys=key_cache),
        scoped=ScopedDeps(
            engine=scoped_engine,
            store=scoped_store,
            tenants=TenantDeps(store=scoped_store, pepper=pepper, keys=key_cache),
        ),
        secrets=SecretBox(settings.secret_key.value),
    )


class Orchestrator(msgspec.Struct, frozen=True, kw_only=True):
    """The reply policy's dependencies and the connections they hold (closed by `close`)."""

    deps: OrchestratorDeps
    models: Models
    locks: ConversationLocks
    live: LivePublisher
    tools: TenantTools
    assistants: AssistantCache

    async def close(self) -> None:
        """Reap the MCP servers; close the model clients, the lock and live connections."""
        await self.tools.close()
        await self.models.gateway.aclose()
        await self.locks.close()
        await self.live.close()


async def _no_knowledge(query: str, top_k: int) -> list[Any]:
    """Retrieval until the knowledge module lands: nothing is found (the prompt says so)."""
    del query, top_k
    return []


def build_orchestrator(deps: Deps) -> Orchestrator:
    """Wire the reply policy to the process's stores, models and connections."""
    url = libpq_url(deps.database_url)
    locks, live = ConversationLocks(url), LivePublisher(url)
    llm = deps.settings.llm
    models = Models(
        deps.engine,
        gateway=LLMGateway(url_guard=public_url_guard(llm.allowed_hosts)),
        prices=PriceTable.with_overrides(llm.prices),
        limiter=CallRateLimiter(max_wait=llm.call_rate_max_wait_seconds),
    )

    tools = TenantTools(HttpToolRunner(llm.allowed_hosts), McpProcesses())
    assistants = AssistantCache(AssistantDeps(store=deps.store, box=deps.secrets))
    orchestrator = OrchestratorDeps(
        conversations=ConversationDeps(store=deps.store, cache=StreamCache()),
        load_assistant=assistants.load,
        locks=locks,
        provider_for=models.provider_for,
        check_limits=models.check,
        retrieve=_no_knowledge,
        usage=UsageRecorder(models.price),
        live=live.open,
        tools=tools.open,
    )
    return Orchestrator(
        deps=orchestrator,
        models=models,
        locks=locks,
        live=live,
        tools=tools,
        assistants=assistants,
    )
