"""The assistant-settings aggregate of a tenant: pure decide/evolve.

One stream per tenant (`assistant-<tenant id>`) holds the settings as replaced over time,
which providers have a key, the tenant's HTTP tools and the MCP servers it enabled. Keys and
tools' secrets never enter an event: they are sealed into `tenants.provider_keys` and
`tenants.tool_secrets` in the same transaction as their event (see `handlers`, `tools`).
"""

import re
import uuid
from urllib.parse import urlsplit

import msgspec

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ValidationError
from metachat.tenants.commands import (
    KEYLESS_PROVIDERS,
    MAX_HTTP_TOOLS,
    RESERVED_TOOL_NAMES,
    AssistantSettings,
    ConfigureAssistant,
    ConfigureHttpTool,
    DisableMcpServer,
    EnableMcpServer,
    HttpTool,
    ModelChoice,
    ProviderKind,
    RemoveHttpTool,
    RemoveProviderKey,
    SetProviderKey,
)
from metachat.tenants.events import (
    AssistantConfigured,
    HttpToolConfigured,
    HttpToolRemoved,
    McpServerDisabled,
    McpServerEnabled,
    ProviderKeyRemoved,
    ProviderKeySet,
)

Command = (
    ConfigureAssistant
    | SetProviderKey
    | RemoveProviderKey
    | ConfigureHttpTool
    | RemoveHttpTool
    | EnableMcpServer
    | DisableMcpServer
)
PLACEHOLDER = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")
"""An argument's place in an HTTP tool's URL."""
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "cookie"}
)
_MAX_SCHEMA_BYTES = 20_000


class AssistantState(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's assistant as its events describe it; the defaults until configured."""

    settings: AssistantSettings = msgspec.field(default_factory=AssistantSettings)
    keys: dict[str, str] = msgspec.field(default_factory=dict)
    """Provider → last four characters of its key."""
    http_tools: dict[str, HttpTool] = msgspec.field(default_factory=dict)
    mcp_servers: dict[str, list[str]] = msgspec.field(default_factory=dict)
    """Enabled MCP server → the names of the credentials the tenant stored for it."""


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


def check_http_tool(tool: HttpTool, *, has_secret: bool) -> None:
    """Refuse a tool the model could not call, or that would send a secret nobody gave."""
    if tool.name in RESERVED_TOOL_NAMES or "__" in tool.name:
        raise ValidationError(f"{tool.name} is a built-in name, or has __", field="name")
    schema = tool.parameters
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if (
        schema.get("type") != "object"
        or not isinstance(properties, dict)
        or not isinstance(required, list)
        or not all(isinstance(r, str) and r in properties for r in required)
        or len(msgspec.json.encode(schema)) > _MAX_SCHEMA_BYTES
    ):
        raise ValidationError(
            "parameters must be a JSON object schema whose required names are properties",
            field="parameters",
        )
    split = urlsplit(tool.url)
    if "{" in split.netloc or "}" in split.netloc or not split.hostname:
        raise ValidationError("the URL's host is fixed: no placeholders there", field="url")
    for name in PLACEHOLDER.findall(tool.url):
        if name not in required:
            raise ValidationError(f"placeholder {name} must be a required argument", field="url")
    if "{" in PLACEHOLDER.sub("", tool.url) or "}" in PLACEHOLDER.sub("", tool.url):
        raise ValidationError("a brace in the URL that is not a {placeholder}", field="url")
    _check_auth(tool, has_secret=has_secret)


def _check_auth(tool: HttpTool, *, has_secret: bool) -> None:
    if tool.auth == "header":
        if tool.header_name is None or tool.header_name.lower() in _FORBIDDEN_HEADERS:
            raise ValidationError("header auth needs an allowed header_name", field="header_name")
    elif tool.header_name is not None:
        raise ValidationError("header_name is only for header auth", field="header_name")
    if has_secret != (tool.auth != "none"):
        wanted = "needs a secret" if tool.auth != "none" else "takes no secret"
        raise ValidationError(f"{tool.auth} auth {wanted}", field="secret")


def _decide_tools(state: AssistantState, command: Command) -> list[Event]:
    if isinstance(command, ConfigureHttpTool):
        check_http_tool(command.tool, has_secret=command.has_secret)
        tools = state.http_tools
        if command.tool.name not in tools and len(tools) >= MAX_HTTP_TOOLS:
            raise ValidationError(f"at most {MAX_HTTP_TOOLS} HTTP tools", field="name")
        return [HttpToolConfigured(tool=command.tool, has_secret=command.has_secret)]
    if isinstance(command, RemoveHttpTool):
        return [HttpToolRemoved(name=command.name)] if command.name in state.http_tools else []
    if isinstance(command, EnableMcpServer):
        if sorted(command.variables) != sorted(command.declared):
            raise ValidationError(
                f"{command.server} needs exactly the credentials {sorted(command.declared)}",
                field="credentials",
            )
        return [McpServerEnabled(server=command.server, variables=sorted(command.variables))]
    if isinstance(command, DisableMcpServer):
        known = command.server in state.mcp_servers
        return [McpServerDisabled(server=command.server)] if known else []
    raise AssertionError(f"not a tool command: {command!r}")


def decide(state: AssistantState, command: Command) -> list[Event]:
    """Return the events a command produces, or raise why it cannot."""
    if isinstance(command, ConfigureHttpTool | RemoveHttpTool | EnableMcpServer | DisableMcpServer):
        return _decide_tools(state, command)
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


def _evolve_tools(state: AssistantState, event: Event) -> AssistantState:
    if isinstance(event, HttpToolConfigured):
        tools = {**state.http_tools, event.tool.name: event.tool}
        return msgspec.structs.replace(state, http_tools=tools)
    if isinstance(event, HttpToolRemoved):
        tools = {k: v for k, v in state.http_tools.items() if k != event.name}
        return msgspec.structs.replace(state, http_tools=tools)
    if isinstance(event, McpServerEnabled):
        servers = {**state.mcp_servers, event.server: event.variables}
        return msgspec.structs.replace(state, mcp_servers=servers)
    if isinstance(event, McpServerDisabled):
        servers = {k: v for k, v in state.mcp_servers.items() if k != event.server}
        return msgspec.structs.replace(state, mcp_servers=servers)
    return state


def evolve(state: AssistantState, event: Event) -> AssistantState:
    """Apply one event to the state."""
    if isinstance(event, AssistantConfigured):
        return msgspec.structs.replace(state, settings=event.settings)
    if isinstance(event, ProviderKeySet):
        return msgspec.structs.replace(state, keys={**state.keys, event.provider: event.last_four})
    if isinstance(event, ProviderKeyRemoved):
        keys = {k: v for k, v in state.keys.items() if k != event.provider}
        return msgspec.structs.replace(state, keys=keys)
    return _evolve_tools(state, event)


def replay(events: list[Event]) -> AssistantState:
    """Fold events into the state they describe."""
    state = AssistantState()
    for event in events:
        state = evolve(state, event)
    return state
