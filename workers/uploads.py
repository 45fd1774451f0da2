"""Object storage: a successful page settles only after its lines are in the bucket.

The settle applies a page's follow-ups together with its acknowledgement (one
XACK-gated script), so for a sink that uploads segments (``S3SegmentSink``)
the WHOLE successful outcome waits, not just its acknowledgement:

    fetch -> sink.write(lines) -> hold(outcome): settler.waiting
    commit loop: when due, swap ``waiting`` out, seal + upload the segment,
    then move the swapped outcomes into the settler's pending batch.

Outcomes that wrote no lines (retries, dead letters, final pages, empty pages)
settle at once: nothing of theirs can be lost. A waiting outcome stays in the
settler's ``held`` (it counts against the claim capacity, and workers.leases
keeps re-claiming it, so no one takes it over while its upload waits) and in
``in_batches()`` (a drain does not hand it back as unstarted).

When the segment is due: it reached ``segment_bytes``; its oldest line or the
oldest waiting outcome is ``hold_s`` old (cursor chains advance only when
their page settles, so the hold is short: ``S3Options.hold_limit_s``); or the
consumer is idle (nothing in flight or queued locally).

The swap and the seal happen with no await between them (``commit()`` seals
before its first await): the swapped outcomes are exactly those whose lines
are in the sealed segments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from scraper.settle import Outcome
from scraper.sinks_s3 import S3SegmentSink, SinkUnavailable
from workers.settler import Settler

log = logging.getLogger(__name__)
_POLL_S = 0.05
_RETRY_MAX_S = 10.0


class Uploads:
    def __init__(self, *, name: str, settler: Settler, sink: S3SegmentSink, idle: Callable[[], bool]) -> None:
        self.name = name
        self.settler = settler
        self.sink = sink
        self.hold_s = sink.hold_s
        self.idle = idle
        self.since = 0.0  # monotonic time the oldest waiting outcome was held

    def hold(self, outcome: Outcome) -> None:
        """Keep a successful outcome until the segment holding its lines is uploaded."""
        if not self.settler.waiting:
            self.since = time.monotonic()
        self.settler.waiting.append(outcome)

    def due(self) -> bool:
        if self.sink.due(idle=self.idle()):
            return True
        return bool(self.settler.waiting) and time.monotonic() - self.since >= self.hold_s

    async def commit(self) -> None:
        """Upload every line written so far; then the outcomes held before it settle."""
        settler = self.settler
        batch, settler.waiting = settler.waiting, []
        since = self.since
        try:
            await self.sink.commit()  # seals synchronously, before its first await
        except BaseException:
            settler.waiting[:0] = batch  # still waiting, in order, before those held meanwhile
            self.since = since
            raise
        for outcome in batch:
            settler.pending.add(outcome)

    async def run(self) -> None:
        """Commit whenever due; a failed upload is retried with backoff (the pages stay held)."""
        delay = 0.1
        while True:
            await asyncio.sleep(_POLL_S)
            if not self.due():
                continue
            try:
                await self.commit()
            except SinkUnavailable as exc:
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            delay = 0.1

    async def last(self) -> None:
        """At the end of a drain: upload what is left; if the bucket refuses, hand those pages back
        (fetched again elsewhere; a copy that did reach the bucket is removed by the export)."""
        try:
            await self.commit()
        except SinkUnavailable as exc:
            waiting, self.settler.waiting = self.settler.waiting, []
            log.warning("%s: last segment not uploaded (%s): handing back %d pages", self.name, exc, len(waiting))
            self.settler.release([(outcome.entry_id, outcome.task) for outcome in waiting])
