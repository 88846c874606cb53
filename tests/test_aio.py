"""Stopping tasks whose cancellation gets lost (Python 3.11 ``wait_for`` race) in bounded
time: ``stop_requested`` still sees the request, ``cancel_and_wait`` never wedges."""

from __future__ import annotations

import asyncio

from edgegov.host.aio import cancel_and_wait, stop_requested


async def _swallowing_loop(rounds: list[int], check: bool, halt: list | None = None) -> None:
    while not (check and stop_requested()) and not halt:
        try:
            await asyncio.sleep(0.005)
        except asyncio.CancelledError:
            pass  # what a client library that loses the cancel looks like from outside
        rounds.append(1)


def test_loop_that_loses_the_cancel_still_stops_on_stop_requested():
    async def main():
        rounds: list[int] = []
        task = asyncio.create_task(_swallowing_loop(rounds, check=True))
        await asyncio.sleep(0.03)
        assert await cancel_and_wait(task, 2)
        n = len(rounds)
        await asyncio.sleep(0.03)
        assert len(rounds) == n and task.done()

    asyncio.run(main())


def test_cancel_and_wait_is_bounded_when_the_task_never_stops():
    async def main():
        rounds: list[int] = []
        halt: list = []
        task = asyncio.create_task(_swallowing_loop(rounds, check=False, halt=halt))
        await asyncio.sleep(0.02)
        assert await cancel_and_wait(task, 0.1) is False
        assert not task.done()
        halt.append(1)  # end it for good
        await asyncio.wait({task}, timeout=1)
        assert task.done()

    asyncio.run(main())


def test_cancel_and_wait_accepts_none_and_finished_tasks():
    async def main():
        assert await cancel_and_wait(None)
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        assert await cancel_and_wait(task)

    asyncio.run(main())
