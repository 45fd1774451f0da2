"""Every benchmark mode still crawls exactly the corpus (issue 15): a mode cannot silently break.

Each mode of ``benchmarks/run.py`` (the default ones, the labelled variants
and the slow peers) runs once against a real simulator on 127.0.0.1 over a
tiny corpus (~80 pages, sub-reply pages included, so discovery is
exercised), through the same harness that times them; its output file must
hold exactly the corpus's comment ids, each once. No time is asserted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path[:0] = [str(BENCH), str(BENCH / "modes")]

import _harness as h  # noqa: E402
import _report  # noqa: E402

from scraper.simulator.corpus import Corpus  # noqa: E402

VIDEOS, COMMENTS, SEED = 4, 1_500, 3


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[h.Job, h.Simulator]]:
    corpus = Corpus.generate(seed=SEED, videos=VIDEOS, comments=COMMENTS)
    job = h.Job.build(corpus, tmp_path_factory.mktemp("bench"))
    with h.Simulator(videos=VIDEOS, comments=COMMENTS, seed=SEED, latency_ms=0) as sim:
        job.bind(sim.url)
        yield job, sim


def test_the_corpus_needs_discovery(bench: tuple[h.Job, h.Simulator]) -> None:
    job, _ = bench
    urls = (job.workdir / "urls.txt").read_text().split()
    assert len(urls) == job.pages > 2 * VIDEOS  # pages past page 1 of each video
    assert any("/x/v2/reply/reply?" in url for url in urls)  # and sub-reply threads


@pytest.mark.parametrize("mode", h.ALL_MODES)
def test_mode_output_is_exact(bench: tuple[h.Job, h.Simulator], mode: str) -> None:
    job, sim = bench
    row = h.run_mode(mode, job, sim, timeout_s=120, extra_args=h.mode_args(mode, 2, 8))
    assert row["check"] == "exact", row.get("failure")
    assert row["status"] == "ok", row.get("failure")
    assert row["requests"] >= job.pages  # it fetched (the output did not come from elsewhere)
    assert row["cpu_s"] > 0 and row["wall_s"] + 0.01 >= row["fetch_s"]  # end to end holds the fetching
    if mode == "scraper":
        steps = row["result"]["steps"]
        assert {"coordinate", "work", "export"} <= set(steps)
        assert row["fetch_s"] == pytest.approx(steps["work"]["wall_s"], abs=1e-3)


def test_summary_keeps_the_spread_and_refuses_a_failed_run() -> None:
    def run(wall: float, status: str = "ok") -> dict[str, Any]:
        return {
            "mode": "bare",
            "status": status,
            "check": "exact",
            "pages": 100,
            "wall_s": wall,
            "fetch_s": wall / 2,
            "cpu_ms_per_page": wall,
            "server_cpu_ms_per_page": 0.1,
            "machine": {"busy_pct": 50.0},
        }

    row = h.summarise([run(3.0), run(1.0), run(2.0)])
    assert row["wall"] == {"min": 1.0, "median": 2.0, "max": 3.0}
    assert row["fetch"] == {"min": 0.5, "median": 1.0, "max": 1.5}
    assert row["pages_per_s"] == 50.0 and row["runs"] == 3
    failed = h.summarise([run(1.0), run(2.0, "FAILED")])
    assert failed["status"] == "FAILED" and failed["failed_runs"] == 1


def test_seed_table_puts_the_articles_seconds_beside_ours() -> None:
    rows = [
        {"mode": m, "status": "ok", "wall": {"min": s, "median": s, "max": s}, "wall_s": s}
        for m, s in (("coroutines", 10.0), ("processes", 30.0), ("threads", 40.0))
    ]
    text = _report.seed_table([{"latency_ms": 0.0, "rows": rows}])
    assert "| `processes` | 63.0 | 1.20 | 30.0 | 3.00 |" in text
    assert "| `threads` | 66.6 | 1.27 | 40.0 | 4.00 |" in text
