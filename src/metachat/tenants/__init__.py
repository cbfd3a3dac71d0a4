"""Tenants: the businesses on the platform and their API keys.

Owns: `tenants.tenant_ids` (the root of every tenant foreign key), `tenants.api_keys` (the
write-side key index), users and sessions, the assistant settings with `tenants.provider_keys`
(providers' keys, sealed), tenants' tools with `tenants.tool_secrets` (sealed), the platform's MCP
server registry (stream `mcp-servers`), and the `tenant_directory` read model.
Publishes: `tenants.tenant_created`, `tenants.api_key_issued`, `tenants.api_key_revoked`, the
`tenants.user_*` events, `tenants.assistant_configured`, `tenants.provider_key_set`,
`tenants.provider_key_removed`, `tenants.http_tool_*`, `tenants.mcp_server_*`.
Consumes: nothing.
"""

from metachat.tenants.assistant.cache import AssistantCache
from metachat.tenants.assistant.handlers import AssistantDeps, LoadedAssistant, load_assistant
from metachat.tenants.assistant.secrets import LoadedHttpTool, LoadedMcpServer
from metachat.tenants.reads import TenantView, get_tenant

__all__ = [
    "AssistantCache",
    "AssistantDeps",
    "LoadedAssistant",
    "LoadedHttpTool",
    "LoadedMcpServer",
    "TenantView",
    "get_tenant",
    "load_assistant",
]
