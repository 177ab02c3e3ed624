"""take_ready (stream/worker/batching.py) on a Faust agent's own test channel, no broker: records that are
there together go in batches of at most `max_`, in order; a lone record is handed over at once, with no window
to wait out (Faust's take_events would hold it until its `within` passed or `max_` records came)."""

from __future__ import annotations

import asyncio

import faust

from stream.worker.batching import take_ready

MAX = 4


async def turns(n: int = 50) -> None:
    """Turns of the event loop: what the agent may do meanwhile, with no clock involved."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_take_ready_batches_what_is_there_and_hands_a_lone_record_over_at_once() -> None:
    app = faust.App("test-batching", broker="kafka://127.0.0.1:1", store="memory://")
    batches: list[list[int]] = []

    @app.agent()
    async def agent(stream: faust.StreamT) -> None:
        async for events in take_ready(stream, MAX):
            batches.append([e.value for e in events])

    async def scenario() -> None:
        async with agent.test_context() as ctx:
            for value in range(10):
                await ctx.put(value)
            await turns()
            together = list(batches)
            await ctx.put(99)
            await turns()
            assert [v for b in together for v in b] == list(range(10))  # all of them, in order
            assert all(1 <= len(b) <= MAX for b in together), together
            assert len(together) < 10, together  # taken in batches, not one by one
            assert batches[len(together):] == [[99]]  # alone, and without waiting for more

    asyncio.run(scenario())
