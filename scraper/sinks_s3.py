"""Output to an S3-compatible bucket: lines gather in a segment, each finished
segment is uploaded as one object, and pages are acknowledged only after the
segment holding their lines is in the bucket.

The contract with the consumer (the at-least-once rule of ``JsonlSink``, with
an upload in place of a ``write()``):

- ``write(records)`` appends lines to the open segment (memory only);
- ``due(idle=...)`` says the open segment should be committed now: it reached
  ``segment_bytes``, its oldest line is ``hold_s`` old, or the consumer is idle;
- ``await commit()`` seals the open segment *before its first await* and
  returns once it and every earlier sealed segment are uploaded. A page whose
  lines were written before the call may be acknowledged after it returns.
  On failure it raises ``SinkUnavailable``; the sealed segments stay queued
  and the next ``commit()`` uploads them first, under the same keys.

Why nothing is lost or doubled in the export: a PUT is atomic (the object is
whole or absent, Content-MD5 rejects a damaged body), a retried PUT of a
segment rewrites the same key with the same bytes, and a segment uploaded by a
worker killed before its acknowledgement only duplicates lines of pages that
are fetched again: the export keeps one line per ``rpid``.

The client is aiobotocore (botocore's own request signing, retries and
credential chain, including IRSA and EKS Pod Identity, over the aiohttp this
project already uses): uploads never block the event loop, and the only CPU
spent on the loop is signing; the MD5 of a segment runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from scraper.errors import RuntimeFailure, UserError
from scraper.objectstore import BucketUrl, S3Options, client_kwargs, config_kwargs

log = logging.getLogger(__name__)
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE


class SinkUnavailable(RuntimeFailure):
    """The bucket did not take a segment (after botocore's own retries); try again later."""


@dataclass(frozen=True, slots=True)
class Segment:
    key: str
    body: bytes
    lines: int


@dataclass(slots=True)
class UploadStats:
    segments: int = 0
    bytes: int = 0
    lines: int = 0
    failures: int = 0
    upload_s: float = 0.0  # wall time of the uploads (the loop runs other work meanwhile)


def segment_stem(now_ms: int | None = None) -> str:
    """``<host>-<pid>-<start ms>``: unique per process start, across pods and restarts."""
    start = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{socket.gethostname()}-{os.getpid()}-{start}"


class S3SegmentSink:
    """One per worker process; not shared between processes."""

    holds_acks = True  # the consumer must keep acknowledgements until commit() returns

    def __init__(
        self, location: BucketUrl, target: str, options: S3Options, *, hold_s: float | None = None, stem: str = ""
    ) -> None:
        options.validate()
        self.location = location
        self.target = target
        self.options = options
        self.hold_s = options.segment_max_age_s if hold_s is None else hold_s
        self.stem = stem or segment_stem()
        self.stats = UploadStats()
        self._buffer = bytearray()
        self._lines = 0
        self._opened_at: float | None = None  # monotonic time of the open segment's first line
        self._seq = 0
        self._sealed: deque[Segment] = deque()
        self._client: Any = None
        self._exit = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()  # one upload at a time, in order

    @property
    def path(self) -> str:
        """Where this process's segments go (for the start-up log line)."""
        return f"s3://{self.location.bucket}/{self.location.target_prefix(self.target)}{self.stem}-*.jsonl"

    async def open(self) -> None:
        # Imported here: ~0.3 s of CPU and ~45 MB per process that a worker
        # writing to local disk (and the supervisor) should not pay.
        from aiobotocore.config import AioConfig  # noqa: PLC0415
        from aiobotocore.session import get_session  # noqa: PLC0415

        session = get_session()
        # Fail at start, not at the first upload: a worker without credentials
        # would fetch pages it can never acknowledge. (This finds IRSA's token
        # file without calling STS; that waits for the first request.)
        if await session.get_credentials() is None:
            raise UserError(
                f"{self.location}: no credentials for the bucket (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or use IRSA / EKS Pod Identity)"
            )
        config = AioConfig(max_pool_connections=4, **config_kwargs(self.options))
        creator = session.create_client("s3", config=config, **client_kwargs(self.options))
        self._client = await self._exit.enter_async_context(creator)

    # ---- the hot path: memory only ------------------------------------------

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._opened_at is None:
            self._opened_at = time.monotonic()
        buffer = self._buffer
        for record in records:
            buffer += orjson.dumps(record, option=_DUMPS_OPTIONS)
        self._lines += len(records)

    @property
    def buffered_bytes(self) -> int:
        """Lines not yet in the bucket (open + sealed segments): for back-pressure."""
        return len(self._buffer) + sum(len(segment.body) for segment in self._sealed)

    def due(self, *, idle: bool = False) -> bool:
        if self._sealed:
            return True  # a failed upload waits for a retry
        if not self._buffer:
            return False
        if idle or len(self._buffer) >= self.options.segment_bytes:
            return True
        return self._opened_at is not None and time.monotonic() - self._opened_at >= self.hold_s

    def flush(self) -> None:
        """Nothing to do at a settle: lines reach the bucket through ``commit()``,
        and the consumer settles a page only after the commit holding its lines."""

    def discard(self) -> int:
        """Drop the open segment (its pages are handed back); returns bytes dropped."""
        dropped = len(self._buffer)
        self._buffer.clear()
        self._lines = 0
        self._opened_at = None
        return dropped

    # ---- commit ---------------------------------------------------------------

    def _seal(self) -> None:
        if not self._buffer:
            return
        key = self.location.segment_key(self.target, self.stem, self._seq)
        self._seq += 1
        self._sealed.append(Segment(key=key, body=bytes(self._buffer), lines=self._lines))
        self._buffer.clear()
        self._lines = 0
        self._opened_at = None

    async def commit(self) -> None:
        self._seal()  # synchronous: the caller's batch matches exactly the lines sealed here
        async with self._lock:
            while self._sealed:
                segment = self._sealed[0]
                await self._upload(segment)
                self._sealed.popleft()

    async def _upload(self, segment: Segment) -> None:
        if self._client is None:
            raise RuntimeFailure("S3SegmentSink.open() was not awaited")
        started = time.perf_counter()
        md5 = await asyncio.to_thread(_content_md5, segment.body)  # ~2 ms per MB: off the loop
        try:
            await self._client.put_object(
                Bucket=self.location.bucket,
                Key=segment.key,
                Body=segment.body,
                ContentMD5=md5,
                ContentType="application/x-ndjson",
            )
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            self.stats.failures += 1
            raise SinkUnavailable(f"s3://{self.location.bucket}/{segment.key}: upload failed: {exc}") from exc
        finally:
            self.stats.upload_s += time.perf_counter() - started
        self.stats.segments += 1
        self.stats.bytes += len(segment.body)
        self.stats.lines += segment.lines

    async def aclose(self) -> None:
        """Upload what is left, then close the client (even if the upload failed)."""
        try:
            await self.commit()
        finally:
            await self._exit.aclose()
            self._client = None
            stats = self.stats
            log.info(
                "%s: %d segments, %d lines, %.1f MiB uploaded (%.2fs of uploads, %d failed attempts)",
                self.path,
                stats.segments,
                stats.lines,
                stats.bytes / 2**20,
                stats.upload_s,
                stats.failures,
            )
            if self._sealed:
                log.warning(
                    "%s: %d segments could not be uploaded; their pages stay unacknowledged and will be fetched again",
                    self.path,
                    len(self._sealed),
                )


def _content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
