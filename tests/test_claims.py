"""A burst's blocking claim ends when its BLOCK says, even on a server that notices
timeouts only at its cron (workers.claims). The server is modelled: a read that
answers only once another command wakes the server, as an idle redis-server with
its default hz does for a read whose BLOCK has passed."""

from __future__ import annotations

import asyncio

import pytest

from workers.claims import claim_on_time

HANG = 5.0  # seconds: a read nobody ends fails the test instead of hanging it


class QuietServer:
    """Ends a timed-out blocked read only when woken by another command."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()
        self.wakes = 0

    async def blocked_read(self, reply: list[str]) -> list[str]:
        await self.woken.wait()
        return reply

    async def ping(self) -> bool:
        self.wakes += 1
        self.woken.set()
        return True


async def test_a_read_still_out_after_its_block_gets_one_wake_up() -> None:
    server = QuietServer()
    reply = await asyncio.wait_for(claim_on_time(server.blocked_read([]), 0.01, server.ping), HANG)
    assert reply == []
    assert server.wakes == 1


async def test_a_read_that_answers_in_time_is_left_alone() -> None:
    server = QuietServer()

    async def answered() -> list[str]:
        return ["1-0"]

    assert await claim_on_time(answered(), 0.01, server.ping) == ["1-0"]
    assert server.wakes == 0


async def test_the_reply_of_a_woken_read_is_kept_whole() -> None:
    """The wake-up ends the read; it does not cut it: what it delivered is returned."""
    server = QuietServer()
    reply = await asyncio.wait_for(claim_on_time(server.blocked_read(["1-0", "2-0"]), 0.01, server.ping), HANG)
    assert reply == ["1-0", "2-0"]


async def test_cancelling_the_claim_cancels_the_read() -> None:
    server = QuietServer()
    read = asyncio.ensure_future(server.blocked_read([]))
    claim = asyncio.ensure_future(claim_on_time(read, 60.0, server.ping))
    await asyncio.sleep(0)
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    assert read.cancelled()
    assert server.wakes == 0


async def test_a_failed_wake_up_fails_the_claim_and_ends_the_read() -> None:
    """Redis gone between the read and its wake-up: the error reaches the claimer (its
    guard's policy), and no read is left running unobserved."""

    async def refused() -> bool:
        raise ConnectionError("redis went away")

    server = QuietServer()
    read = asyncio.ensure_future(server.blocked_read([]))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(claim_on_time(read, 0.01, refused), HANG)
    assert read.cancelled()
