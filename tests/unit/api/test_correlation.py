"""Choosing a request's correlation id."""

import uuid
from typing import Any

from metachat.api.correlation import correlation_id_of


def scope(*headers: tuple[bytes, bytes]) -> Any:
    return {"type": "http", "headers": list(headers)}


def test_takes_a_valid_correlation_id_header() -> None:
    given = uuid.uuid4()
    assert correlation_id_of(scope((b"x-correlation-id", str(given).encode()))) == given


def test_falls_back_to_a_valid_request_id() -> None:
    given = uuid.uuid4()
    chosen = correlation_id_of(
        scope((b"x-correlation-id", b"not-a-uuid"), (b"x-request-id", str(given).encode()))
    )
    assert chosen == given


def test_mints_a_uuid7_when_no_header_is_valid() -> None:
    chosen = correlation_id_of(scope((b"x-request-id", b"' OR 1=1 --")))
    assert chosen.version == 7


def test_is_chosen_once_per_request() -> None:
    request = scope()
    assert correlation_id_of(request) == correlation_id_of(request)
    assert correlation_id_of(scope()) != correlation_id_of(request)
