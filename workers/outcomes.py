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
from scraper.ledger import dead_delta, failure_delta
from scraper.queue import SettleBatch, now_ms
from scraper.settings import Settings, WorkerSettings
from scraper.settle import Outcome
from scraper.targets.base import CredentialsRejected
from scraper.tasks import Task

log = logging.getLogger(__name__)


def record_failure(batch: SettleBatch, entry_id: bytes, task: Task, exc: PageError, *, settings: Settings,
                   consumer: str) -> Outcome:  # fmt: skip
    worker, target = settings.worker, settings.target
    outcome = batch.add(Outcome(entry_id, task))
    if isinstance(exc, PageUnavailable):
        outcome.final = record(task, consumer, kind=exc.kind, error=str(exc))
        outcome.ledger = failure_delta(task, exc)
        outcome.counters[f"final:{exc.kind}"] += 1
        outcome.counters["pages_final"] += 1
        return outcome
    attempts = task.attempt + 1
    if isinstance(exc, CredentialsRejected) and task.renewals < target.credential_retries:
        # Not the page's fault: retry soon with the renewed credential, no attempt spent.
        delay = target.credential_retry_s * (0.5 + random.random())
        outcome.retry_task, outcome.retry_due_ms = task.renewed(), now_ms() + int(delay * 1000)
        outcome.counters[f"retries:{exc.reason}"] += 1
        outcome.counters["retries"] += 1
    elif attempts >= worker.max_attempts:
        record_dead(outcome, consumer, exc.reason, str(exc), attempts)
    else:
        delay = backoff_s(attempts, exc, worker)
        outcome.retry_task, outcome.retry_due_ms = task.retried(), now_ms() + int(delay * 1000)
        outcome.counters[f"retries:{exc.reason}"] += 1
        outcome.counters["retries"] += 1
    if isinstance(exc, Throttled) or (isinstance(exc, CredentialsRejected) and exc.cooldown):
        outcome.counters["bans"] += 1
    return outcome


def record_dead(outcome: Outcome, consumer: str, reason: str, error: str, attempts: int) -> None:
    task = outcome.task
    outcome.dead = record(task, consumer, reason=reason, error=error, attempts=attempts)
    outcome.ledger = dead_delta(task, reason, attempts)
    outcome.counters["dead"] += 1
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
