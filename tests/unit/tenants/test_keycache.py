"""The key cache's rules, without a database: trust, generations, expiry, bounds."""

import uuid
from datetime import UTC, datetime, timedelta

from metachat.tenants.keycache import KeyCache


class Listening(KeyCache):
    """A cache whose listener is taken as up (the real one needs PostgreSQL)."""

    def _start(self) -> None:
        self._listening = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _put(cache: KeyCache, digest: bytes, key_id: uuid.UUID, **kw: object) -> None:
    kw.setdefault("expires_at", None)
    kw.setdefault("generation", cache.generation)
    cache.put(digest, "principal", key_id=key_id, **kw)  # type: ignore[arg-type]


class TestKeyCache:
    def test_nothing_is_trusted_before_the_listener_is_up(self) -> None:
        cache = KeyCache("postgresql:///unused")
        _put(cache, b"d", uuid.uuid4())
        assert cache.peek(b"d") is None

    def test_remembers_until_the_time_to_live(self) -> None:
        clock = Clock()
        cache = Listening("postgresql:///unused", ttl_s=10, clock=clock)
        cache._start()
        _put(cache, b"d", uuid.uuid4())
        assert cache.get(b"d") == "principal"
        clock.now = 10.0
        assert cache.get(b"d") is None

    def test_never_past_the_keys_expiry(self) -> None:
        cache = Listening("postgresql:///unused")
        cache._start()
        _put(cache, b"d", uuid.uuid4(), expires_at=datetime.now(UTC) - timedelta(seconds=1))
        assert cache.get(b"d") is None

    def test_a_revocation_forgets_every_entry_of_the_key(self) -> None:
        cache = Listening("postgresql:///unused")
        cache._start()
        revoked, kept = uuid.uuid4(), uuid.uuid4()
        _put(cache, b"a", revoked)
        _put(cache, b"b", kept)
        cache.forget(revoked)
        assert (cache.get(b"a"), cache.get(b"b")) == (None, "principal")

    def test_an_answer_looked_up_before_a_revocation_is_not_kept(self) -> None:
        cache = Listening("postgresql:///unused")
        cache._start()
        key_id = uuid.uuid4()
        before = cache.generation  # the lookup starts
        cache.forget(key_id)  # the revocation notice arrives meanwhile
        _put(cache, b"d", key_id, generation=before)  # the lookup's (stale) answer
        assert cache.get(b"d") is None
