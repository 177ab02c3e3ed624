"""Batches of what is ready: the agents' replacement for Faust's `take_events(max_, within)`.

`take_events` yields when `max_` events are buffered or when `within` has passed, so at a low rate every click
waits up to the window before its batch starts, and an idle agent still wakes once per window (200 times a
second at 5 ms: 6 % of a busy worker's CPU went to those wake-ups, docs/benchmarks/profile-beauty.md).
`take_ready` yields as soon as the stream's channel holds no further record: Faust hands every record of a
fetch to the channel before the stream runs again, so a batch is what the last fetches brought, up to `max_`.
At a low rate that is one click, served at once; under load or after a stall the batch grows towards `max_`,
and the tower and search costs are shared by more users.

Acknowledgement is take_events': an event is acked only after the code that consumed its batch has run (the
generator is resumed), so offsets never move past a click whose interests are not sent yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from mode.utils.futures import notify

# An event buffered while the channel was not empty is taken by the next one; this bounds the wait should no next
# one come (e.g. records skipped during a rebalance), at two wake-ups a second when idle.
IDLE_CHECK_S = 0.5


async def take_ready(stream: faust.StreamT, max_: int, idle_check_s: float = IDLE_CHECK_S
                     ) -> AsyncIterator[list[faust.types.EventT]]:
    """Lists of at most `max_` events: each as soon as the events fetched so far are all in it."""
    events: list[faust.types.EventT] = []
    ready = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future | None = None
    queue = stream.channel.queue
    acks_before = stream.enable_acks

    async def add(value: Any) -> Any:  # a stream processor: runs once per record, in the stream's task
        nonlocal consuming
        if consuming is not None:  # the batch before is being handled: wait until it is acked
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_ready: a value without its event")
        events.append(event)
        if len(events) >= max_:
            ready.set()
            consumed.clear()
            await stream.wait(consumed)  # never more than max_ in a batch
        elif queue.empty():
            ready.set()
        return value

    stream.enable_acks = False  # acked below, after the batch is handled
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # as take_events does: the stream drains its channel meanwhile
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=idle_check_s)
            if not events:
                ready.clear()
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                for event in events:
                    await stream.ack(event)
                events.clear()
                notify(consuming)
                ready.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks_before
        stream._processors.remove(add)
