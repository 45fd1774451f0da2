"""Worker children start forked from a warm forkserver with the hot path already imported (issue 15)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from pathlib import Path

import uvloop

from workers import startup


async def report(path: str) -> None:
    """A child's entry: what it found when it started (module level: it is pickled)."""
    facts = {
        "preloaded": "aiohttp" in sys.modules and "workers.child" in sys.modules,
        "loop": type(asyncio.get_running_loop()).__module__,
        "ppid": os.getppid(),
        "frozen": gc.get_freeze_count(),
        "adapter": "scraper.targets.bilibili" in sys.modules,
        # must stay unimported until the child sets PROMETHEUS_MULTIPROC_DIR (scraper.metrics)
        "prometheus": "prometheus_client" in sys.modules,
    }
    Path(path).write_text(json.dumps(facts))


def test_a_worker_child_is_forked_with_the_hot_path_imported(tmp_path: Path) -> None:
    startup.warm()
    facts = []
    for index in range(2):  # the second child comes from the same, already warm server
        out = tmp_path / f"child-{index}.json"
        child = startup.WorkerProcess(target=report, args=(str(out),), loop_initializer=uvloop.new_event_loop)
        child.start()
        child.aio_process.join(60)
        assert child.exitcode == 0
        facts.append(json.loads(out.read_text()))
    for fact in facts:
        assert fact["preloaded"] is True  # imported by the forkserver, not by the child
        assert fact["loop"].startswith("uvloop")
        assert fact["frozen"] > 10_000  # the inherited heap is frozen: no copy-on-write by the child's GC
        assert fact["adapter"] is True
        assert fact["prometheus"] is False
    assert facts[0]["ppid"] == facts[1]["ppid"] != os.getpid()  # both forked by one server
