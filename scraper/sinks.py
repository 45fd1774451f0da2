"""Output shards: one JSON-lines file per worker process, written by that process.

Lines are gathered in memory and written with one ``write()`` per settle batch
(a page is ~8 KB, so writing each page would be one syscall per page). The
queue acknowledges a page only after ``flush()`` returned, so a crash can cut
the file only inside lines of pages that were never acknowledged.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import orjson

from scraper.errors import RuntimeFailure

_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE


def shard_path(output_dir: Path, target: str, index: int) -> Path:
    """``<output>/<target>/<host>-<pid>-<n>.jsonl``: unique across pods sharing a volume."""
    return output_dir / target / f"{socket.gethostname()}-{os.getpid()}-{index}.jsonl"


class JsonlSink:
    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._buffer = bytearray()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: our bytearray is the buffer, flush() is one write().
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RuntimeFailure(f"{path}: cannot open output shard: {exc.strerror}") from None

    def write(self, records: list[dict[str, Any]]) -> None:
        buffer = self._buffer
        for record in records:
            buffer += orjson.dumps(record, option=_DUMPS_OPTIONS)

    def flush(self) -> None:
        if not self._buffer:
            return
        written = self._file.write(self._buffer)  # a regular file takes it all at once
        while written is not None and written < len(self._buffer):
            del self._buffer[:written]
            written = self._file.write(self._buffer)
        self._buffer.clear()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        self._file.close()
