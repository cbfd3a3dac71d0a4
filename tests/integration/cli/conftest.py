"""CLI tests run the real commands against their own database, with settings from the env."""

import os
import socket
from collections.abc import Callable

import pytest

from tests.conftest import AMQP_URL, REPO, SESSION

PEPPER = "cli-test-api-key-pepper-" + "p" * 32


@pytest.fixture(scope="module")
def cli_database(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture(scope="module")
def cli_env(cli_database: str) -> dict[str, str]:
    """The environment a CLI process sees: only METACHAT_ variables this test chose."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("METACHAT_")}
    return {
        **base,
        "METACHAT_ENV": "test",
        "METACHAT_DATABASE_URL": cli_database,
        "METACHAT_DATA_DIR": str(REPO / ".metachat" / "test-data"),
        "METACHAT_SECRET_KEY": "cli-test-secret-key-" + "s" * 32,
        "METACHAT_API_KEY_PEPPER": PEPPER,
        "METACHAT_AMQP_URL": AMQP_URL,
        "METACHAT_AMQP__EXCHANGE": f"mct.{SESSION}.cli.events",
        "METACHAT_AMQP__QUEUE_PREFIX": f"mct.{SESSION}.cli.",
        "METACHAT_LOG_JSON": "false",
        "METACHAT_LOG_LEVEL": "WARNING",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
