"""The projection checkpoint: last processed position and active generation, guarded writes."""

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """Where a projection stands: effects up to `position` are committed in `generation`."""

    position: int
    generation: int


class ProjectionNotInstalledError(LookupError):
    """A projection has no checkpoint row: its migration has not run."""


class CheckpointConflictError(RuntimeError):
    """Another writer moved the checkpoint: this instance must stop writing (R11)."""


_LOAD = text("SELECT position, generation FROM eventstore.checkpoints WHERE name = :n")

# The WHERE clause is the guard against a second writer: it only matches the row this
# instance last saw. Under READ COMMITTED, an UPDATE that waited for a concurrent writer's row
# lock re-checks the condition on the new row version and matches nothing, so two writers
# can never both commit from the same starting position. `position = :to` on an empty page
# keeps the checkpoint where it is and only beats the heartbeat (R10, R15).
_ADVANCE = text("""
UPDATE eventstore.checkpoints
SET position = :to, heartbeat_at = now(), held_at = :held,
    updated_at = CASE WHEN position <> :to THEN now() ELSE updated_at END
WHERE name = :n AND position = :expected AND generation = :generation
""")


async def load_checkpoint(conn: AsyncConnection, name: str) -> Checkpoint:
    """Read a projection's checkpoint; raise ProjectionNotInstalledError if it has none."""
    row = (await conn.execute(_LOAD, {"n": name})).first()
    if row is None:
        raise ProjectionNotInstalledError(
            f"projection {name!r} is not installed (no checkpoint): run `metachat db upgrade`"
        )
    return Checkpoint(position=row.position, generation=row.generation)


async def advance_checkpoint(
    conn: AsyncConnection, name: str, *, expected: Checkpoint, to: int, held_at: int | None = None
) -> Checkpoint:
    """Move the checkpoint from `expected` to `to` and beat the heartbeat (caller's transaction).

    `held_at` is the first missing position the reader waits for (None: not waiting); it is
    stored so that every process can export it (R2's mark).

    Raises:
        CheckpointConflictError: the row is no longer at `expected` (another writer, or a
            rebuild switched the generation); the caller must roll back and stop.
    """
    params = {
        "n": name,
        "to": to,
        "expected": expected.position,
        "generation": expected.generation,
        "held": held_at,
    }
    result = await conn.execute(_ADVANCE, params)
    if result.rowcount != 1:
        raise CheckpointConflictError(
            f"checkpoint of {name!r} moved away from {expected.position} (g{expected.generation})"
        )
    return Checkpoint(position=to, generation=expected.generation)
