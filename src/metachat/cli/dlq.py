"""`metachat dlq`: look at a consumer's dead-lettered messages and send them back (R8, R9).

Listing takes every message of the DLQ without acknowledging it and then closes the channel,
which hands them all back: nothing is consumed. Redriving publishes a copy to the consumer's own
queue (same message id, headers and body) with publisher confirms, and acks the DLQ message only
after the broker confirmed the copy: a crash in between leaves a duplicate, never a loss, and the
consumer's tracking makes the duplicate harmless (R7).
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import click
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity

from metachat.cli.common import load
from metachat.eventstore.consumer import dead_letter_queue_name, queue_name
from metachat.settings import Settings
from metachat.worker.consumers_role import CONSUMERS

# Set by the quorum queue on each delivery; it describes the DLQ's count, not the message.
_BROKER_HEADERS = frozenset({"x-delivery-count"})


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead-lettered message as an operator sees it."""

    event_id: str | None
    event_type: str | None
    tenant_id: str | None
    position: int | None
    death_count: int
    reason: str | None
    first_death_at: datetime | None
    died_in: str | None


def describe(message: AbstractIncomingMessage) -> DeadLetter:
    """Read the event and its death record from a dead-lettered message."""
    headers: dict[str, Any] = dict(message.headers or {})
    deaths = [d for d in headers.get("x-death") or [] if isinstance(d, dict)]
    times = [d["time"] for d in deaths if isinstance(d.get("time"), datetime)]
    body = _body_fields(message.body) if "x-event-type" not in headers else {}
    position = headers.get("x-position", body.get("position"))
    return DeadLetter(
        event_id=message.message_id or body.get("event_id"),
        event_type=headers.get("x-event-type", body.get("type")),
        tenant_id=headers.get("x-tenant-id", body.get("tenant_id")),
        position=int(position) if position is not None else None,
        death_count=sum(int(d.get("count", 0)) for d in deaths),
        reason=headers.get("x-first-death-reason") or (deaths[0].get("reason") if deaths else None),
        first_death_at=min(times).astimezone(UTC) if times else None,
        died_in=headers.get("x-first-death-queue"),
    )


def _body_fields(body: bytes) -> dict[str, Any]:
    """Envelope fields from the body, for messages published without our headers."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


async def _existing(channel: AbstractChannel, name: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        known = ", ".join(spec.name for spec in CONSUMERS)
        raise click.ClickException(f"no queue {name!r} (registered consumers: {known})") from None


async def _take_all(channel: AbstractChannel, name: str) -> list[AbstractIncomingMessage]:
    """Take every ready message of a queue without acking; closing the channel hands them back."""
    queue = await _existing(channel, name)
    taken: list[AbstractIncomingMessage] = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(message)
    return taken


async def list_dead_letters(settings: Settings, consumer: str) -> list[DeadLetter]:
    """Return a consumer's dead-lettered messages, oldest first, leaving them in the DLQ."""
    async with await aio_pika.connect(settings.amqp.url) as connection:
        channel = await connection.channel()
        taken = await _take_all(channel, dead_letter_queue_name(settings, consumer))
        await channel.close()  # unacked: every message goes back to the DLQ
    return [describe(message) for message in taken]


def select(
    *,
    event_ids: frozenset[str] = frozenset(),
    since: datetime | None = None,
    until: datetime | None = None,
) -> Callable[[DeadLetter], bool]:
    """A filter over dead letters by event id and by first-death time range (both optional)."""

    def chosen(letter: DeadLetter) -> bool:
        if event_ids and letter.event_id not in event_ids:
            return False
        died = letter.first_death_at
        if since is not None and (died is None or died < since):
            return False
        return until is None or (died is not None and died <= until)

    return chosen


async def redrive(
    settings: Settings, consumer: str, *, chosen: Callable[[DeadLetter], bool] = lambda _: True
) -> int:
    """Send the chosen dead letters back to the consumer's queue; return how many were sent."""
    target = queue_name(settings, consumer)
    async with await aio_pika.connect(settings.amqp.url) as connection:
        # Confirms plus `mandatory` with returns raising: a copy that reached no queue raises
        # here, and its original stays in the DLQ.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await _existing(channel, target)
        sent = 0
        for message in await _take_all(channel, dead_letter_queue_name(settings, consumer)):
            if not chosen(describe(message)):
                continue
            await channel.default_exchange.publish(
                _copy(message), routing_key=target, mandatory=True
            )
            await message.ack()  # only after the confirm: at worst a duplicate, never a loss
            sent += 1
        await channel.close()  # the messages not chosen go back to the DLQ
    return sent


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@click.group("dlq")
def group() -> None:
    """Inspect and re-drive dead-lettered messages of a consumer."""


@group.command("list")
@click.argument("consumer")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(consumer: str, as_json: bool) -> None:
    """List CONSUMER's dead-lettered messages without consuming them."""
    letters = asyncio.run(list_dead_letters(load(), consumer))
    for letter in letters:
        if as_json:
            click.echo(msgspec.json.encode(letter).decode())
        else:
            died = letter.first_death_at.isoformat() if letter.first_death_at else "-"
            click.echo(
                f"{letter.event_id}  {letter.event_type}  tenant={letter.tenant_id}  "
                f"position={letter.position}  deaths={letter.death_count}  "
                f"reason={letter.reason}  first_death={died}"
            )
    if not as_json:
        click.echo(f"{len(letters)} dead-lettered message(s) for {consumer}", err=True)


@group.command("redrive")
@click.argument("consumer")
@click.option("--id", "event_ids", multiple=True, help="Only this event id (repeatable).")
@click.option("--since", type=click.DateTime(), help="Only messages that died at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Only messages that died at or before (UTC).")
def redrive_command(
    consumer: str, event_ids: tuple[str, ...], since: datetime | None, until: datetime | None
) -> None:
    """Re-publish CONSUMER's dead-lettered messages to its queue, keeping their event ids."""
    chosen = select(event_ids=frozenset(event_ids), since=_utc(since), until=_utc(until))
    sent = asyncio.run(redrive(load(), consumer, chosen=chosen))
    click.echo(f"re-drove {sent} message(s) to {consumer}")
