"""The bare ceiling of bench_api.py: a tiny Litestar app doing one INSERT transaction per request.

The same stack as the product's API role, minus the product: Litestar with a msgspec body, one
`engine.begin()` + INSERT through SQLAlchemy async and psycopg (an engine made by
`metachat.database.engine.create_engine`, so the same pool settings), served by uvicorn with the
product's uvicorn options, on an event loop created the way `metachat run` creates it (its
`_loop_factory`: uvloop where installed; `--uvloop` insists on it). No auth, no events, no
logging per request.

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
from sqlalchemy import text

from metachat.database.engine import create_engine

_INSERT = text("INSERT INTO bench_bare (body) VALUES (CAST(:body AS jsonb)) RETURNING id")


class MessageIn(msgspec.Struct, frozen=True):
    text: str
    external_id: str


class Inserted(msgspec.Struct, frozen=True):
    id: int


def create_app(database_url: str) -> Litestar:
    engine = create_engine(database_url)
    encode = msgspec.json.Encoder().encode

    @post("/insert", status_code=201)
    async def insert(data: MessageIn) -> Inserted:
        async with engine.begin() as conn:
            row_id = (await conn.execute(_INSERT, {"body": encode(data).decode()})).scalar_one()
        return Inserted(id=row_id)

    async def dispose() -> None:
        await engine.dispose()

    return Litestar(route_handlers=[insert], on_shutdown=[dispose], logging_config=None)


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
