"""What a finished page changes in its settle batch: ok, retry, dead letter, final.

Every change to a batch happens synchronously (no await in here): the settler
swaps batches between awaits, and an outcome appended to an already-swapped
batch would be lost.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import orjson

from scraper.errors import PageError, PageUnavailable, Throttled
from scraper.queue import SettleBatch, now_ms
from scraper.settings import WorkerSettings
from scraper.tasks import Task

log = logging.getLogger(__name__)


def record_failure(batch: SettleBatch, entry_id: bytes, task: Task, exc: PageError, *, worker: WorkerSettings,
                   consumer: str) -> None:  # fmt: skip
    batch.acks.append(entry_id)
    if isinstance(exc, PageUnavailable):
        batch.final.append(record(task, consumer, kind=exc.kind, error=str(exc)))
        batch.counters[f"final:{exc.kind}"] += 1
        batch.counters["pages_final"] += 1
        return
    attempts = task.attempt + 1
    if attempts >= worker.max_attempts:
        record_dead(batch, task, consumer, exc.reason, str(exc), attempts)
    else:
        delay = backoff_s(attempts, exc, worker)
        batch.retries.append((task.retried(), now_ms() + int(delay * 1000)))
        batch.counters[f"retries:{exc.reason}"] += 1
        batch.counters["retries"] += 1
    if isinstance(exc, Throttled):
        batch.counters["bans"] += 1


def record_dead(batch: SettleBatch, task: Task, consumer: str, reason: str, error: str, attempts: int) -> None:
    batch.dead.append(record(task, consumer, reason=reason, error=error, attempts=attempts))
    batch.counters["dead"] += 1
    log.warning("%s: dead letter %s after %d attempts: %s", consumer, task.fingerprint, attempts, error)


def backoff_s(attempts: int, exc: PageError, worker: WorkerSettings) -> float:
    # Exponential with jitter (half to full), so retries of a burst of
    # failures do not come back in lockstep.
    base = min(worker.backoff_max_s, worker.backoff_base_s * 2 ** (attempts - 1))
    delay = base * (0.5 + random.random() / 2)
    if isinstance(exc, Throttled) and exc.retry_after_s:
        delay = max(delay, exc.retry_after_s)
    return float(delay)


def record(task: Task, consumer: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": orjson.dumps(task.to_dict()).decode(),
        "fingerprint": task.fingerprint,
        "consumer": consumer,
        "first_seen_ms": task.first_seen_ms,
        "failed_at_ms": now_ms(),
        **extra,
    }
