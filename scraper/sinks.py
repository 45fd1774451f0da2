"""Output shards: one JSON-lines file per worker process start, written by that process.

Lines are gathered in memory and written with one ``write()`` per settle batch
(a page is ~8 KB, so writing each page would be one syscall per page). The
queue acknowledges a page only after ``flush()`` returned (and, with
``fsync``, after the kernel said the bytes are on the device), so a crash can
cut the file only inside lines of pages that were never acknowledged.

A shard is never appended to by a later process: its name is unique per
process start (``<host>-<pid>-<start ms>-<random>-<index>.jsonl``), because a
restarted container has the same host name and, in a fresh PID namespace, the
same pids. A write that fails (full disk, I/O error, read-only filesystem) is
cut back to the last complete line and raises ``OutputFailure`` naming the
path and the cause; nothing of that batch is acknowledged.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from scraper.errors import RuntimeFailure

_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE


class OutputFailure(RuntimeFailure):
    """The output cannot take more lines: stop claiming, hand back, exit 1."""


def shard_path(output_dir: Path, target: str, index: int) -> Path:
    """``<output>/<target>/<host>-<pid>-<start ms>-<random>-<n>.jsonl``: unique per process start."""
    unique = f"{socket.gethostname()}-{os.getpid()}-{int(time.time() * 1000)}-{secrets.token_hex(3)}"
    return output_dir / target / f"{unique}-{index}.jsonl"


def describe_os_error(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = exc.strerror or str(exc)
    return f"{reason} ({code})" if code else reason


class JsonlSink:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._buffer = bytearray()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: our bytearray is the buffer, flush() is one write().
            # "x": a shard that exists already belongs to someone else.
            self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise OutputFailure(f"{path}: cannot open output shard: {describe_os_error(exc)}") from None
        self._size = 0  # bytes of complete lines on disk

    def write(self, records: list[dict[str, Any]]) -> None:
        buffer = self._buffer
        for record in records:
            buffer += orjson.dumps(record, option=_DUMPS_OPTIONS)

    def discard(self) -> int:
        """Drop the lines not yet written (their pages are handed back); returns bytes dropped."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    def flush(self) -> None:
        if not self._buffer:
            return
        try:
            with memoryview(self._buffer) as view:
                offset = 0
                while offset < len(view):  # a regular file takes it all at once, but be sure
                    written = self._file.write(view[offset:])
                    offset += written or 0
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._cut_back()
            raise OutputFailure(f"{self.path}: cannot write output: {describe_os_error(exc)}") from None
        self._size += len(self._buffer)
        self._buffer.clear()

    def _cut_back(self) -> None:
        """Remove a partial batch, so the shard ends with a complete line."""
        try:
            os.ftruncate(self._file.fileno(), self._size)
        except OSError:
            # Cannot even cut (EIO): the export skips the partial line, and no
            # one appends to this shard again.
            return

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()
