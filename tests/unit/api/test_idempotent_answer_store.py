"""Storing the first answer of an idempotent request survives a short database outage."""

import pytest
from sqlalchemy.exc import OperationalError

from metachat.api.idempotency import _STORE_ATTEMPTS, _stubbornly


class TestStoreTheFirstAnswer:
    async def test_a_dropped_connection_is_retried_until_the_answer_is_stored(self) -> None:
        calls = 0

        async def store() -> None:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

        await _stubbornly(store)
        assert calls == 3

    async def test_a_database_that_stays_away_fails_after_the_attempts(self) -> None:
        calls = 0

        async def store() -> None:
            nonlocal calls
            calls += 1
            raise OperationalError("UPDATE", {}, Exception("no route to host"))

        with pytest.raises(OperationalError):
            await _stubbornly(store)
        assert calls == _STORE_ATTEMPTS

    async def test_a_bug_is_not_retried(self) -> None:
        calls = 0

        async def store() -> None:
            nonlocal calls
            calls += 1
            raise TypeError("not a database problem")

        with pytest.raises(TypeError):
            await _stubbornly(store)
        assert calls == 1
