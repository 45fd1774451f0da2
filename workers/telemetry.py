"""What the consumer reports per request and per settled batch."""

from __future__ import annotations

from collections.abc import Callable

from scraper.metrics import Recorder
from scraper.queue import SettleBatch


class Telemetry:
    def __init__(self, recorder: Recorder, in_flight: Callable[[], int] | None = None) -> None:
        self.recorder = recorder
        self.in_flight = in_flight

    def request(self, duration_s: float, outcome: str) -> None:
        self.recorder.request(duration_s, outcome)

    def settled(self, batch: SettleBatch) -> None:
        if not self.recorder.enabled:  # no metrics port: not even the batch's totals
            return
        self.recorder.settled(batch.all_counters())
        if self.in_flight is not None:
            self.recorder.in_flight(self.in_flight())
