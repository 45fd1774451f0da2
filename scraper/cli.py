"""The `scraper` command: parse flags, build settings once, run one command.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input. Every
error is one line on stderr, never a traceback (``--log-level DEBUG`` shows
the traceback of an unexpected error).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from scraper.errors import RuntimeFailure, UserError

log = logging.getLogger("scraper")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser, *, target: bool | str = False) -> None:
    parser.add_argument("--config-dir", help="folder with scraper.toml and targets/ (default: ./config)")
    parser.add_argument("--redis-url", help="redis://, rediss:// or unix:// URL (default: embedded redis-server)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-format", choices=["text", "json"])
    if target == "optional":
        parser.add_argument("--target", help="target name: config/targets/NAME.toml")
    elif target:
        parser.add_argument("--target", required=True, help="target name: config/targets/NAME.toml")


def _work_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, help="worker processes (default from config: 2)")
    parser.add_argument("--concurrency", type=int, help="consumer coroutines per process (default 128)")
    parser.add_argument("--output-dir", help="where shards go: DIR/<target>/<host>-<pid>-<start ms>-<random>-<n>.jsonl")
    parser.add_argument("--base-url", help="the site's base URL (default from the target's TOML)")
    parser.add_argument(
        "--rate-limit", type=float, help="requests/s to the host, all processes and pods together; 0 = none"
    )
    parser.add_argument("--rate-burst", type=int, help="requests the limiter lets through at once")
    parser.add_argument("--inflight-per-host", type=int, help="cluster-wide cap on requests in flight; 0 = none")
    parser.add_argument("--batch-size", type=int, help="tasks claimed per XREADGROUP")
    parser.add_argument("--max-attempts", type=int, help="attempts before a page becomes a dead letter (default 5)")
    parser.add_argument("--backoff-base", type=float, dest="backoff_base_s", help="first retry delay, seconds")
    parser.add_argument(
        "--claim-idle", type=float, dest="claim_idle_s", help="seconds before a silent consumer's pages are taken over"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        dest="drain_timeout_s",
        help="seconds to finish in-flight pages on SIGTERM (default 25)",
    )
    parser.add_argument("--timeout", type=float, dest="timeout_s", help="per-request timeout, seconds")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics for this pod on this port")
    parser.add_argument("--fsync", action="store_true", default=None, help="fsync each flushed batch of output")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scraper", description="Distributed comment scraper: Redis Streams + multi-process coroutine workers."
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("coordinate", help="enqueue the first comment page of every video in the list")
    _common(p, target=True)
    p.add_argument("--videos", help="video list file (default from the target's TOML)")
    p.add_argument("--base-url", help="base URL the workers should crawl (stored for them)")
    p.add_argument("--wait", action="store_true", help="then show progress until the crawl is done")

    p = sub.add_parser("work", help="run worker processes that claim and crawl pages")
    _common(p, target=True)
    _work_flags(p)
    p.add_argument("--burst", action="store_true", help="exit 0 once nothing is queued, delayed or pending")

    p = sub.add_parser("export", help="merge the output shards into one file, one line per comment")
    _common(p, target=True)
    p.add_argument("--output-dir", help="where the shards are (default from config)")
    p.add_argument("--output", required=True, help="destination file")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")

    p = sub.add_parser("run", help="coordinate, work and export in one command, with progress")
    _common(p, target=True)
    _work_flags(p)
    p.add_argument("--videos", help="video list file (default from the target's TOML)")
    p.add_argument("--output", help="export file (default: OUTPUT_DIR/<target>.jsonl)")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument(
        "--simulate",
        choices=["auto", "always", "never"],
        help="crawl the bundled simulator (auto: when the site is unreachable)",
    )

    p = sub.add_parser("simulate", help="serve the bundled comment-API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--videos", type=int, default=24)
    p.add_argument("--comments", type=int, default=5000, help="total comments (roots + replies)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--max-page", type=int, default=0, help="depth cap: deeper pages answer code -400")
    p.add_argument("--write-videos", help="write the corpus's video list to this file")
    for fault in ("fail", "truncate", "bad-json", "slow", "reset"):
        p.add_argument(f"--{fault}-rate", type=float, default=0.0, help=f"share of requests that get the {fault} fault")
    p.add_argument("--slow-ms", type=float, default=3000.0)
    p.add_argument("--rate-limit", type=float, default=0.0, help="per-client requests/s before a ban")
    p.add_argument("--rate-burst", type=int, default=5)
    p.add_argument("--ban-seconds", type=float, default=10.0)
    p.add_argument("--ban-shape", choices=["html", "json", "mixed"], default="mixed")
    p.add_argument("--throttle-status", type=int, choices=[412, 429], default=412)
    p.add_argument("--log-level", default="INFO")

    p = sub.add_parser("stats", help="queue depth, in flight, progress, rates, consumers")
    _common(p, target="optional")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--watch", action="store_true", help="live dashboard, refreshed every second")
    p.add_argument("--frames", type=int, default=0, help=argparse.SUPPRESS)  # bound --watch (tests)

    p = sub.add_parser("dead", help="list, requeue or purge dead letters")
    _common(p, target=True)
    dead = p.add_subparsers(dest="dead_command", required=True, parser_class=Parser)
    d = dead.add_parser("list")
    d.add_argument("--json", action="store_true")
    d = dead.add_parser("requeue")
    d.add_argument("--all", action="store_true")
    d.add_argument("ids", nargs="*", help="dead-letter ids from `dead list`")
    dead.add_parser("purge")

    p = sub.add_parser("reset", help="forget a target's queue, dedup set, counters and dead letters")
    _common(p, target=True)
    p.add_argument("--force", action="store_true", help="even while workers are running")

    p = sub.add_parser("health", help="exit 0 when this pod's worker has a fresh heartbeat (liveness probe)")
    p.add_argument("--heartbeat-dir", help="default from config: /tmp/scraper-heartbeat")
    p.add_argument("--max-age", type=float, default=30.0, help="seconds a heartbeat stays fresh")
    p.add_argument("--stall", type=float, default=120.0, help="seconds holding pages without progress = wedged")
    p.add_argument("--config-dir")

    p = sub.add_parser("exporter", help="serve queue-level Prometheus gauges from Redis")
    _common(p)
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - scraped from inside the cluster
    p.add_argument("--port", type=int, default=9101)

    p = sub.add_parser("redis", help="the embedded redis-server: status or stop")
    p.add_argument("action", choices=["status", "stop", "url"])
    p.add_argument("--config-dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from scraper import commands  # noqa: PLC0415 - keeps `scraper --help` fast

    try:
        return commands.dispatch(args)
    except UserError as exc:
        print(f"scraper: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeFailure as exc:
        print(f"scraper: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scraper: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, not a traceback
        log.debug("unexpected error", exc_info=True)
        print(
            f"scraper: error: unexpected {type(exc).__name__}: {exc} (--log-level DEBUG shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
