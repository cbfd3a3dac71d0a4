"""A process's memory of the tenants' assistants, checked with one probe before each use.

Every customer message needs its tenant's assistant (settings, opened keys, tools) and name,
which would otherwise be read from three streams and two tables each time. What they are built
from changes only with an event: the settings, the keys (`tenants.provider_keys`) and the tools'
secrets (`tenants.tool_secrets`) with an event on the tenant's assistant stream in the same
transaction, the name on the tenant's stream, the operator's MCP servers on `mcp-servers`. So an
entry remembers those three streams' versions, and each use first reads the current ones in one
statement (three index probes): any difference, and the assistant is loaded again. A change
committed before a message is handled is therefore seen by that message's reply.

The versions are read *before* loading, so a change committed during a load can only make the
entry look older than it is (and be loaded again next time), never newer.
"""

import uuid
from collections import OrderedDict

from metachat.eventstore.driver import call
from metachat.tenants import model as tenant_model
from metachat.tenants.assistant import model
from metachat.tenants.assistant.handlers import AssistantDeps, LoadedAssistant, load_assistant
from metachat.tenants.mcp import STREAM as MCP_STREAM

MAX_TENANTS = 10_000

_VERSIONS = """
SELECT
  (SELECT coalesce(max(stream_version), 0) FROM eventstore.events WHERE stream_id = %(a)s) AS a,
  (SELECT coalesce(max(stream_version), 0) FROM eventstore.events WHERE stream_id = %(t)s) AS t,
  (SELECT coalesce(max(stream_version), 0) FROM eventstore.events WHERE stream_id = %(m)s) AS m
"""

Versions = tuple[int, int, int]


class AssistantCache:
    """Least recently used tenants' loaded assistants, each valid for its streams' versions."""

    def __init__(self, deps: AssistantDeps, *, max_tenants: int = MAX_TENANTS) -> None:
        self._deps = deps
        self._max = max_tenants
        self._entries: OrderedDict[uuid.UUID, tuple[Versions, LoadedAssistant]] = OrderedDict()
        self.loads = 0
        """How many times an assistant was loaded (not served from memory), for tests."""

    async def load(self, tenant_id: uuid.UUID) -> LoadedAssistant:
        """The tenant's assistant as of now: from memory unless one of its streams moved."""
        versions = await self._versions(tenant_id)
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[0] == versions:
            self._entries.move_to_end(tenant_id)
            return entry[1]
        loaded = await load_assistant(self._deps, tenant_id)
        self.loads += 1
        self._entries[tenant_id] = (versions, loaded)
        self._entries.move_to_end(tenant_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return loaded

    async def _versions(self, tenant_id: uuid.UUID) -> Versions:
        params = {
            "a": model.stream_id(tenant_id),
            "t": tenant_model.stream_id(tenant_id),
            "m": MCP_STREAM,
        }
        # The owner's store (the workers'): a tenant-scoped one would not see `mcp-servers`.
        # One statement in autocommit (on the store's call pool): one round trip, no BEGIN and
        # ROLLBACK around it.
        async with self._deps.store.autocommit() as driver:
            (row,) = await call(driver, _VERSIONS, params)
        return int(row[0]), int(row[1]), int(row[2])
