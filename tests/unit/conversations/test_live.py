"""Live reply pieces: a reply never waits for its notifications, and the queue is bounded."""

import uuid

from metachat.conversations.live import MAX_QUEUED, LivePublisher, decode_delta

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"


class TestLivePublisher:
    async def test_pieces_are_queued_without_waiting_for_the_database(self) -> None:
        publisher = LivePublisher(UNREACHABLE)  # its sender can never connect
        reply = await publisher.open(
            tenant_id=uuid.uuid4(), conversation_id=uuid.uuid4(), reply_id=uuid.uuid4()
        )
        await reply.delta("Hello", round_number=0)
        await reply.close()  # returns at once: nothing here waits for a NOTIFY
        queued = list(publisher._queued)
        assert [decode_delta(p) is not None for p in queued] == [True] * len(queued)
        assert decode_delta(queued[-1]).done  # type: ignore[union-attr]
        assert "".join(d.text for d in map(decode_delta, queued) if d) == "Hello"
        await publisher.close()

    async def test_the_queue_keeps_the_newest_pieces(self) -> None:
        publisher = LivePublisher(UNREACHABLE)
        await publisher.open(
            tenant_id=uuid.uuid4(), conversation_id=uuid.uuid4(), reply_id=uuid.uuid4()
        )
        for n in range(MAX_QUEUED + 5):
            publisher.send(str(n))
        assert len(publisher._queued) == MAX_QUEUED
        assert publisher._queued[-1] == str(MAX_QUEUED + 4)
        await publisher.close()
