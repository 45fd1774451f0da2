"""`scraper simulate`: serve the bundled comment-API simulator."""

from __future__ import annotations

import argparse

from scraper.commands.common import Subparsers

FAULTS = {
    "fail": "HTTP 500/503 or code -503",
    "truncate": "half the body, then a close",
    "bad-json": "HTTP 200 with invalid JSON",
    "slow": "an answer after --slow-ms",
    "reset": "a dropped connection, no response",
}


def register(sub: Subparsers) -> None:
    p = sub.add_parser("simulate", help="serve the bundled comment-API simulator")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8088, help="port to listen on; 0 = a free port (default 8088)")
    p.add_argument("--videos", type=int, default=24, help="videos in the generated corpus (default 24)")
    p.add_argument("--comments", type=int, default=5000, help="total comments, roots + replies (default 5000)")
    p.add_argument("--seed", type=int, default=1, help="corpus seed: the same seed serves the same comments")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer, milliseconds")
    p.add_argument(
        "--profile",
        choices=["real", "legacy-open"],
        default="real",
        help="real: like the service (WBI, buvid3, login gating, depth cap); legacy-open: every gate off",
    )
    p.add_argument("--session", default="", help="the SESSDATA cookie value accepted as logged in (default: none)")
    p.add_argument(
        "--key-rotate-s", type=float, default=86400.0, help="WBI keys change every this many seconds (0 = never)"
    )
    p.add_argument(
        "--max-page",
        type=int,
        default=None,
        help="legacy depth cap: deeper pages answer code -400 (0 = none; default 250 real, 0 legacy-open)",
    )
    p.add_argument("--write-videos", help="write the corpus's video list to this file")
    for fault, what in FAULTS.items():
        p.add_argument(f"--{fault}-rate", type=float, default=0.0, help=f"share of requests (0-1) that get {what}")
    p.add_argument("--slow-ms", type=float, default=3000.0, help="delay of a slow answer, milliseconds")
    p.add_argument("--rate-limit", type=float, default=0.0, help="per-client requests/s before a ban; 0 = none")
    p.add_argument("--rate-burst", type=int, default=5, help="requests a client may send at once before the limit")
    p.add_argument("--ban-seconds", type=float, default=10.0, help="how long a ban lasts, seconds")
    p.add_argument("--ban-shape", choices=["html", "json", "mixed"], default="mixed", help="what a ban looks like")
    p.add_argument("--throttle-status", type=int, choices=[412, 429], default=412, help="HTTP status of a ban")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.set_defaults(handler=run)


def _validate(args: argparse.Namespace) -> None:
    from scraper.settings import COUNT, NON_NEGATIVE, SHARE, Bound, check_number  # noqa: PLC0415

    rules = {
        "--port": (args.port, Bound(0, 65535)),
        "--videos": (args.videos, COUNT),
        "--comments": (args.comments, NON_NEGATIVE),
        "--latency-ms": (args.latency_ms, NON_NEGATIVE),
        "--max-page": (args.max_page if args.max_page is not None else 0, NON_NEGATIVE),
        "--key-rotate-s": (args.key_rotate_s, NON_NEGATIVE),
        "--slow-ms": (args.slow_ms, NON_NEGATIVE),
        "--rate-limit": (args.rate_limit, NON_NEGATIVE),
        "--rate-burst": (args.rate_burst, COUNT),
        "--ban-seconds": (args.ban_seconds, NON_NEGATIVE),
        **{f"--{fault}-rate": (getattr(args, f"{fault.replace('-', '_')}_rate"), SHARE) for fault in FAULTS},
    }
    for flag, (value, bound) in rules.items():
        check_number(flag, value, bound)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from scraper.errors import RuntimeFailure  # noqa: PLC0415
    from scraper.logs import setup_logging  # noqa: PLC0415
    from scraper.simulator.app import SimulatorOptions, run_simulator  # noqa: PLC0415

    setup_logging(args.log_level, "text")
    _validate(args)
    options = SimulatorOptions(
        seed=args.seed,
        videos=args.videos,
        comments=args.comments,
        max_page=args.max_page,
        profile=args.profile,
        session=args.session,
        key_rotate_s=args.key_rotate_s,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        truncate_rate=args.truncate_rate,
        bad_json_rate=args.bad_json_rate,
        slow_rate=args.slow_rate,
        slow_ms=args.slow_ms,
        reset_rate=args.reset_rate,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        ban_seconds=args.ban_seconds,
        ban_shape=args.ban_shape,
        throttle_status=args.throttle_status,
    )
    write_videos = Path(args.write_videos) if args.write_videos else None
    try:
        run_simulator(options, host=args.host, port=args.port, write_videos=write_videos)
    except OSError as exc:
        raise RuntimeFailure(f"simulator cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0
