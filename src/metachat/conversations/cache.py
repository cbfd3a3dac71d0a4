"""A process's memory of the conversations it wrote last: their streams and states.

A command reads the conversation's whole stream to decide; a busy conversation's next command
usually comes to the same process soon after. Keeping the stream as this process last appended
it skips that read and the decoding of every event. It is safe because the append checks the
version it decides from (optimistic concurrency). The cached version is also checked first
with one index probe (the stream's highest version): when another process wrote meanwhile —
the API and the orchestrator take turns on most conversations — the stream is read again
instead of paying for a failed append. A decision that appends nothing, or refuses, is taken
again on a fresh read before it is answered, since no append would catch a stale state there.
"""

import uuid
from collections import OrderedDict

import msgspec

from metachat.conversations import model
from metachat.eventstore.envelope import Recorded

MAX_CONVERSATIONS = 5_000
MAX_EVENTS = 1_000
"""Longer streams are not kept (memory stays bounded; they are read each time)."""


class Cached(msgspec.Struct, frozen=True, kw_only=True):
    """One conversation as this process last wrote it."""

    tenant_id: uuid.UUID
    history: tuple[Recorded, ...]
    state: model.ConversationState


class StreamCache:
    """Least recently used conversations, bounded in count and in stream length."""

    def __init__(self, *, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._max = max_conversations
        self._entries: OrderedDict[uuid.UUID, Cached] = OrderedDict()

    def get(self, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> Cached | None:
        """The conversation as last written here, if it is the tenant's and still kept."""
        entry = self._entries.get(conversation_id)
        if entry is None or entry.tenant_id != tenant_id:
            return None
        self._entries.move_to_end(conversation_id)
        return entry

    def put(
        self, conversation_id: uuid.UUID, history: list[Recorded], state: model.ConversationState
    ) -> None:
        """Remember a conversation's stream as it is after a successful append."""
        if not history or len(history) > MAX_EVENTS:
            self._entries.pop(conversation_id, None)
            return
        tenant_id = history[0].envelope.tenant_id
        self._entries[conversation_id] = Cached(
            tenant_id=tenant_id, history=tuple(history), state=state
        )
        self._entries.move_to_end(conversation_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def drop(self, conversation_id: uuid.UUID) -> None:
        """Forget a conversation (another writer moved it on)."""
        self._entries.pop(conversation_id, None)
