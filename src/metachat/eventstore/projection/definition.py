"""What a projection is: a name, tables under a placeholder schema, and idempotent handlers."""

import re
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from metachat.eventstore.envelope import Recorded

PLACEHOLDER = "projection"
"""The schema every projection table is declared in; `schema_translate_map` swaps in the
generation's physical schema (`proj_<name>_g<N>`) at execution time."""

Handler = Callable[[AsyncConnection, Sequence[Recorded]], Awaitable[None]]
"""Applies events of one type, at most one per key, with one bulk statement (executemany)."""

KeyFn = Callable[[Recorded], Hashable]

SetupFn = Callable[[Connection, str], None]
"""Creates, in a new generation's schema (its name is the argument), what `create_all` cannot:
the partitions of a partitioned table, for instance. Runs in the creating transaction."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_VIEW = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def by_stream(recorded: Recorded) -> Hashable:
    """The default key: events of one stream touch the same rows, so they stay in order."""
    return recorded.envelope.stream_id


@dataclass(frozen=True, kw_only=True, slots=True)
class Projection:
    """A read model built from the event store.

    Attributes:
        name: Stable identifier; also the checkpoint name and the schema prefix.
        metadata: Tables of the model, declared with `schema=PLACEHOLDER`. Tables in other
            schemas may be present only as foreign-key targets; they are never created.
        handlers: Event type -> handler. A handler receives events of its type in position
            order, never two with the same key, and must be idempotent (re-applying an event
            changes nothing), because a batch whose commit was lost is applied again.
        views: Table name -> qualified view name (`<context schema>.<view>`) that readers use.
        key: Which rows an event touches; events with equal keys are applied in order, events
            with different keys may be applied in any order (that is what allows bulk writes).
        setup: Runs after the tables of a new generation are created (install and rebuild).
    """

    name: str
    metadata: MetaData
    handlers: Mapping[str, Handler]
    views: Mapping[str, str]
    key: KeyFn = field(default=by_stream)
    setup: SetupFn | None = None

    def __post_init__(self) -> None:
        # Names end up in DDL as identifiers, so only plain lowercase names are accepted.
        if not _NAME.match(self.name):
            raise ValueError(f"projection name {self.name!r} must match {_NAME.pattern}")
        bad = [view for view in self.views.values() if not _VIEW.match(view)]
        if bad:
            raise ValueError(f"view names must be `<schema>.<name>` in lowercase: {bad}")
        missing = [t for t in self.views if f"{PLACEHOLDER}.{t}" not in self.metadata.tables]
        if missing:
            raise ValueError(f"views name unknown tables: {missing}")

    @property
    def tables(self) -> list[Table]:
        """The tables this projection owns, in dependency order."""
        return [t for t in self.metadata.sorted_tables if t.schema == PLACEHOLDER]

    def schema(self, generation: int) -> str:
        """The physical schema of one generation."""
        return f"{self.schema_prefix}{generation}"

    @property
    def schema_prefix(self) -> str:
        """Every generation schema starts with this."""
        return f"proj_{self.name}_g"

    def translate(self, generation: int) -> dict[str | None, str | None]:
        """The `schema_translate_map` that points the tables at one generation."""
        return {PLACEHOLDER: self.schema(generation)}

    def view_table(self, table: str) -> Table:
        """The table's columns, addressed through its stable view (what readers select from)."""
        schema, name = self.views[table].split(".")
        source = self.metadata.tables[f"{PLACEHOLDER}.{table}"]
        return source.to_metadata(MetaData(), schema=schema, name=name)

    async def apply(self, conn: AsyncConnection, page: Sequence[Recorded]) -> int:
        """Apply a page of events in bulk; return how many were handled (the rest are skipped).

        Events are dealt into rounds: the i-th event of each key goes to round i, so rounds
        keep every key's order while one round can hold thousands of rows. Within a round the
        events are grouped by type and each group is one handler call.
        """
        handled = 0
        for round_ in _rounds([r for r in page if r.envelope.type in self.handlers], self.key):
            by_type: dict[str, list[Recorded]] = {}
            for recorded in round_:
                by_type.setdefault(recorded.envelope.type, []).append(recorded)
            for type_name, group in by_type.items():
                await self.handlers[type_name](conn, group)
                handled += len(group)
        return handled


def _rounds(records: Sequence[Recorded], key: KeyFn) -> Iterator[list[Recorded]]:
    rounds: list[list[Recorded]] = []
    seen: dict[Hashable, int] = {}
    for recorded in records:
        k = key(recorded)
        index = seen.get(k, 0)
        seen[k] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(recorded)
    return iter(rounds)
