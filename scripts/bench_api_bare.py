"""The bare ceiling of bench_api.py: a tiny Litestar app doing one INSERT transaction per request.

The same stack as the product's API role, minus the product: Litestar with a msgspec body, one
INSERT per request, its own transaction (autocommit), on a connection of a psycopg pool made by
`metachat.database.engine.create_call_pool` (the pool the product's appends use), served by
uvicorn with the product's uvicorn options, on an event loop created the way `metachat run`
creates it (its `_loop_factory`: uvloop where installed; `--uvloop` insists on it). No auth, no
events, no logging per request, and no gathering of concurrent requests into one transaction:
each request is its own.

    METACHAT_DATABASE_URL=postgresql://... python scripts/bench_api_bare.py --port 8001

The scratch table `bench_bare` must exist (bench_api.py creates it).
"""

import argparse
import asyncio
import os
from collections.abc import Callable

import msgspec
import uvicorn
from litestar import Litestar, post

from metachat.database.engine import create_call_pool

_INSERT = "INSERT INTO bench_bare (body) VALUES (CAST(%s AS jsonb)) RETURNING id"


class MessageIn(msgspec.Struct, frozen=True):
    text: str
    external_id: str


class Inserted(msgspec.Struct, frozen=True):
    id: int


def create_app(database_url: str) -> Litestar:
    pool = create_call_pool(database_url, size=10)  # the product's default pool_size
    encode = msgspec.json.Encoder().encode

    @post("/insert", status_code=201)
    async def insert(data: MessageIn) -> Inserted:
        async with pool.connection() as conn:
            cursor = await conn.execute(_INSERT, (encode(data).decode(),), prepare=True)
            row = await cursor.fetchone()
        if row is None:
            raise RuntimeError("INSERT … RETURNING answered no row")
        return Inserted(id=row[0])

    async def start() -> None:
        await pool.open(wait=True)

    async def stop() -> None:
        await pool.close()

    return Litestar(
        route_handlers=[insert], on_startup=[start], on_shutdown=[stop], logging_config=None
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`metachat.cli.run._loop_factory`, without importing the whole CLI into this process."""
    try:
        import uvloop  # optional: absent on Windows
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="fail if uvloop is not installed")
    args = parser.parse_args()
    loop_factory = _loop_factory()
    if args.uvloop and loop_factory is None:
        raise SystemExit("--uvloop: uvloop is not installed")
    # The options of src/metachat/api/server.py: uvicorn's defaults pick httptools when present.
    config = uvicorn.Config(
        create_app(os.environ["METACHAT_DATABASE_URL"]),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(server.serve())


if __name__ == "__main__":
    main()
