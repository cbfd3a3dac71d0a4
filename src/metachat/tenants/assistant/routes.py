"""HTTP routes of the assistant settings: read and replace them, store and delete providers' keys.

A stored key is never answered back, only its last four characters. Reading needs
`tenant:read`; every change needs `tenant:admin` and is in the audit trail.
"""

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from metachat.tenants.assistant import handlers
from metachat.tenants.assistant.handlers import AssistantDeps, AssistantView
from metachat.tenants.commands import AssistantSettings, ProviderKind
from metachat.tenants.handlers import Principal

READ = {"scope": "tenant:read"}
ADMIN = {"scope": "tenant:admin"}


class ProviderKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """A provider with a stored key: never the key itself."""

    provider: str
    last_four: str


class AssistantOut(msgspec.Struct, frozen=True, kw_only=True):
    """The assistant's settings and the providers that have a key."""

    settings: AssistantSettings
    keys: list[ProviderKeyOut]


class ProviderKeyIn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A provider's API key to store (encrypted; shown again only as its last four)."""

    provider: ProviderKind
    api_key: Annotated[
        str, msgspec.Meta(min_length=1, max_length=handlers.MAX_KEY_LENGTH, examples=["sk-abc"])
    ]


def _out(view: AssistantView) -> AssistantOut:
    keys = [ProviderKeyOut(provider=p, last_four=last) for p, last in view.keys.items()]
    return AssistantOut(settings=view.settings, keys=keys)


class AssistantController(Controller):
    """The tenant's assistant: voice, model chain, limits, escalation, and providers' keys."""

    path = "/assistant"
    tags = ["assistant"]  # noqa: RUF012 - Litestar's layer attribute

    @get("/", opt=READ, summary="The assistant's settings")
    async def get_settings(
        self, principal: NamedDependency[Principal], assistant_deps: NamedDependency[AssistantDeps]
    ) -> AssistantOut:
        """Return the settings (the defaults until changed) and which providers have a key."""
        return _out(await handlers.get_assistant(assistant_deps.store, principal.tenant_id))

    @put("/", opt=ADMIN, summary="Replace the assistant's settings")
    async def put_settings(
        self,
        data: JSONBody[AssistantSettings],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Replace every setting; each model of the chain needs its provider's key first."""
        view = await handlers.configure_assistant(
            principal.tenant_id,
            data,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @put("/keys", opt=ADMIN, summary="Store a provider's API key")
    async def put_key(
        self,
        data: JSONBody[ProviderKeyIn],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> AssistantOut:
        """Store or replace the key, encrypted at rest; it is never answered back."""
        view = await handlers.set_provider_key(
            principal.tenant_id,
            data.provider,
            data.api_key,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )
        return _out(view)

    @delete("/keys", opt=ADMIN, status_code=204, summary="Delete a provider's API key")
    async def delete_key(
        self,
        provider: FromQuery[ProviderKind],
        principal: NamedDependency[Principal],
        assistant_deps: NamedDependency[AssistantDeps],
        correlation_id: NamedDependency[uuid.UUID],
    ) -> None:
        """Forget the key; refused while a model of the chain needs it, a no-op when absent."""
        await handlers.remove_provider_key(
            principal.tenant_id,
            provider,
            deps=assistant_deps,
            actor=principal.actor,
            correlation_id=correlation_id,
        )


ROUTES = (AssistantController,)
