"""Gathering the messages a consumer has in hand into one transaction (group commit).

Each message's handler task submits its event and waits. One drain task per consumer takes
what has gathered (after waiting up to the linger for more, or until the batch is full), applies
the whole batch at once, and answers every waiting task with its own outcome; only then do
their messages get acknowledged. While a batch is being applied the next one gathers, so under
load batches grow by themselves and an idle consumer waits no longer than the linger.

If a batch fails, its messages are applied again one at a time, so that one poison message
fails (and is redelivered, and in the end dead-lettered) alone, not with its neighbours.
"""

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger()

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Applies submitted items in batches; each submitter gets its own item's result."""

    def __init__(
        self,
        *,
        apply_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        apply_one: Callable[[Item], Awaitable[Result]],
        size: int,
        linger: float,
        name: str,
        single_alone: bool = False,
    ) -> None:
        """Apply submitted items with `apply_batch`, or one by one with `apply_one`.

        With `single_alone`, a batch of one item is applied with `apply_one`, once: its failure
        is its own, with no other item to retry it apart from.
        """
        if size < 1:
            raise ValueError("a batch holds at least one item")
        self._apply_batch = apply_batch
        self._apply_one = apply_one
        self._size = size
        self._linger = linger
        self._name = name
        self._single_alone = single_alone
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._full = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Apply `item` with the next batch; return its result or raise its failure."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._size:
            self._full.set()
        if self._drain_task is None or self._drain_task.done():
            # A fresh context: the drain serves many messages and must not log as the first.
            self._drain_task = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            if self._linger > 0 and len(self._pending) < self._size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
            batch = self._pending[: self._size]
            del self._pending[: self._size]
            if len(self._pending) < self._size:
                self._full.clear()
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        # A submitter cancelled meanwhile (shutdown) will not ack: its message comes back.
        live = [(item, future) for item, future in batch if not future.done()]
        if not live:
            return
        if self._single_alone and len(live) == 1:
            await self._one_at_a_time(live)
            return
        try:
            results = await self._apply_batch([item for item, _ in live])
        except Exception:
            log.warning(
                "batch_failed_retrying_one_at_a_time",
                batch=self._name,
                items=len(live),
                exc_info=True,
            )
            await self._one_at_a_time(live)
            return
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _one_at_a_time(self, live: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        for item, future in live:
            try:
                result = await self._apply_one(item)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
