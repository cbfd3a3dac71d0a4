"""The platform connects with a libpq keyword/value string to a Unix-socket server."""

from psycopg.conninfo import conninfo_to_dict

from metachat.bootstrap import build
from metachat.database.engine import libpq_url
from tests.conftest import make_settings


async def test_keyword_value_string_to_a_socket_server(database_url: str) -> None:
    params = conninfo_to_dict(libpq_url(database_url))
    keyword_string = " ".join(f"{key}={value}" for key, value in params.items() if value)
    assert "://" not in keyword_string
    deps = await build(make_settings(keyword_string))
    try:
        assert await deps.store.last_position() >= 0
    finally:
        await deps.close()
