"""Prometheus metric names and the per-process recorder.

Worker pods export ``/metrics`` for the whole pod: every child records into
prometheus_client's multi-process files (one directory per supervisor) and
the supervisor serves their aggregate. Recording happens once per settled
batch (counters) and once per request (the latency histogram), never through
the parent process.
"""

from __future__ import annotations

import os
from collections import Counter

# Every metric the code exports, as it appears on /metrics, with its
# Prometheus type; the Grafana dashboard may use only these, and only as
# their type allows (tests/k8s/test_dashboard.py). Counters end in _total
# (Prometheus naming rules): prometheus_client adds the suffix on the wire.
POD_METRIC_TYPES = {
    "scraper_pages_total": "counter",  # label status: ok, unavailable, retry, dead
    "scraper_comments_total": "counter",
    "scraper_request_duration_seconds": "histogram",
    "scraper_retries_total": "counter",
    "scraper_in_flight": "gauge",
    "scraper_bans_total": "counter",
}
# `scraper exporter`, read from Redis at scrape time. The crawl totals are
# the target's stats hash: they only grow until `scraper reset`, which
# Prometheus's rate() treats as a counter reset.
QUEUE_METRIC_TYPES = {
    "scraper_queue_lag": "gauge",
    "scraper_queue_pending": "gauge",
    "scraper_queue_delayed": "gauge",
    "scraper_dead_letters": "gauge",  # current dead letters: `dead retry` lowers it
    "scraper_crawl_pages_done_total": "counter",
    "scraper_crawl_comments_total": "counter",
    "scraper_rate_limit_effective_requests_per_second": "gauge",
    "scraper_consumers": "gauge",
}
METRIC_TYPES = {**POD_METRIC_TYPES, **QUEUE_METRIC_TYPES}
POD_METRICS = tuple(POD_METRIC_TYPES)
QUEUE_METRICS = tuple(QUEUE_METRIC_TYPES)
METRIC_NAMES = POD_METRICS + QUEUE_METRICS

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Recorder:
    """Per-process metrics; a no-op unless the supervisor gave a metrics directory."""

    def __init__(self, target: str, multiproc_dir: str | None) -> None:
        self.enabled = bool(multiproc_dir)
        self.target = target
        if not self.enabled:
            return
        # prometheus_client picks its storage when first imported: point it at
        # the supervisor's directory before that import.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
        from prometheus_client import Counter as PromCounter  # noqa: PLC0415
        from prometheus_client import Gauge, Histogram  # noqa: PLC0415

        self._pages = PromCounter("scraper_pages", "Pages settled, by outcome", ["target", "status"])
        self._comments = PromCounter("scraper_comments", "Comments written", ["target"])
        self._retries = PromCounter("scraper_retries", "Retries scheduled, by reason", ["target", "reason"])
        self._bans = PromCounter("scraper_bans", "Ban or throttle signals from the site", ["target"])
        self._latency = Histogram(
            "scraper_request_duration_seconds", "Fetch + parse time per page", ["target"], buckets=LATENCY_BUCKETS_S
        )
        self._in_flight = Gauge("scraper_in_flight", "Requests in flight", ["target"], multiprocess_mode="livesum")
        self._latency_child = self._latency.labels(target)

    def request(self, duration_s: float, outcome: str) -> None:
        if self.enabled:
            self._latency_child.observe(duration_s)

    def in_flight(self, value: int) -> None:
        if self.enabled:
            self._in_flight.labels(self.target).set(value)

    def settled(self, counters: Counter[str]) -> None:
        if not self.enabled:
            return
        target = self.target
        statuses = {"pages_done": "ok", "pages_final": "unavailable", "retries": "retry", "dead": "dead"}
        for counter, status in statuses.items():
            if counters.get(counter):
                self._pages.labels(target, status).inc(counters[counter])
        if counters.get("comments"):
            self._comments.labels(target).inc(counters["comments"])
        if counters.get("bans"):
            self._bans.labels(target).inc(counters["bans"])
        for name, value in counters.items():
            if name.startswith("retries:"):
                self._retries.labels(target, name.partition(":")[2]).inc(value)
