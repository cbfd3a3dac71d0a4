"""Events of the tenants context (public contract)."""

import uuid
from datetime import datetime

from metachat.eventstore.envelope import Event
from metachat.tenants.commands import AssistantSettings, HttpTool, ProviderKind


class TenantCreated(Event, frozen=True, kw_only=True):
    """A business joined the platform."""

    type = "tenants.tenant_created"
    version = 1
    tenant_id: uuid.UUID
    name: str


class TenantRenamed(Event, frozen=True, kw_only=True):
    """A tenant changed its display name."""

    type = "tenants.tenant_renamed"
    version = 1
    name: str


class ApiKeyIssued(Event, frozen=True, kw_only=True):
    """An API key was created; only its prefix and last four characters are recorded."""

    type = "tenants.api_key_issued"
    version = 1
    key_id: uuid.UUID
    name: str
    prefix: str
    last_four: str
    scopes: list[str]
    expires_at: datetime | None = None
    replaces: uuid.UUID | None = None


class ApiKeyRevoked(Event, frozen=True, kw_only=True):
    """An API key stopped working, for good."""

    type = "tenants.api_key_revoked"
    version = 1
    key_id: uuid.UUID
    reason: str


class UserCreated(Event, frozen=True, kw_only=True):
    """A person got an account in the tenant; the password hash is never part of an event."""

    type = "tenants.user_created"
    version = 1
    user_id: uuid.UUID
    email: str
    role: str


class UserRoleChanged(Event, frozen=True, kw_only=True):
    """A user's role changed (owner, admin or agent)."""

    type = "tenants.user_role_changed"
    version = 1
    user_id: uuid.UUID
    role: str
    previous_role: str


class UserDeactivated(Event, frozen=True, kw_only=True):
    """A user can no longer log in; their sessions end."""

    type = "tenants.user_deactivated"
    version = 1
    user_id: uuid.UUID


class AssistantConfigured(Event, frozen=True, kw_only=True):
    """The tenant's assistant settings were replaced (never a key: see ProviderKeySet)."""

    type = "tenants.assistant_configured"
    version = 1
    settings: AssistantSettings


class ProviderKeySet(Event, frozen=True, kw_only=True):
    """A provider's API key was stored, encrypted; only its last four characters are recorded."""

    type = "tenants.provider_key_set"
    version = 1
    provider: ProviderKind
    last_four: str


class ProviderKeyRemoved(Event, frozen=True, kw_only=True):
    """A provider's API key was deleted."""

    type = "tenants.provider_key_removed"
    version = 1
    provider: ProviderKind


class HttpToolConfigured(Event, frozen=True, kw_only=True):
    """An HTTP tool was added or replaced; its secret is sealed apart, never recorded."""

    type = "tenants.http_tool_configured"
    version = 1
    tool: HttpTool
    has_secret: bool


class HttpToolRemoved(Event, frozen=True, kw_only=True):
    """An HTTP tool and its secret were deleted."""

    type = "tenants.http_tool_removed"
    version = 1
    name: str


class McpServerEnabled(Event, frozen=True, kw_only=True):
    """The tenant's assistant may use an MCP server; only the credentials' names are recorded."""

    type = "tenants.mcp_server_enabled"
    version = 1
    server: str
    variables: list[str]


class McpServerDisabled(Event, frozen=True, kw_only=True):
    """The tenant stopped using an MCP server; its credentials were deleted."""

    type = "tenants.mcp_server_disabled"
    version = 1
    server: str


class McpServerRegistered(Event, frozen=True, kw_only=True):
    """An operator registered (or replaced) an MCP server (platform tenant, `mcp-servers`)."""

    type = "tenants.mcp_server_registered"
    version = 1
    name: str
    command: str
    args: list[str]
    env_from_tenant: list[str]


class McpServerRemoved(Event, frozen=True, kw_only=True):
    """An operator took an MCP server off the platform."""

    type = "tenants.mcp_server_removed"
    version = 1
    name: str


EVENTS: tuple[type[Event], ...] = (
    TenantCreated,
    TenantRenamed,
    ApiKeyIssued,
    ApiKeyRevoked,
    UserCreated,
    UserRoleChanged,
    UserDeactivated,
    AssistantConfigured,
    ProviderKeySet,
    ProviderKeyRemoved,
    HttpToolConfigured,
    HttpToolRemoved,
    McpServerEnabled,
    McpServerDisabled,
    McpServerRegistered,
    McpServerRemoved,
)
