"""Client CPU per page on the hot path: the scraper against the oracle, on the simulator and on nginx.

    .venv/bin/python benchmarks/cpu.py                 # the seed's job, 3 rounds (~4 min)
    .venv/bin/python benchmarks/cpu.py --quick         # ~1,000 pages, 1 round: a smoke run

The issue's bar: the scraper's client CPU per page (every process of its
tree: coordinate, supervisor, forkserver, children, export, and Redis) at
most 1.2x the oracle's (`bare`, same P x C), at equal concurrency.

Does the simulator distort that ratio? It is an aiohttp app sharing the two
cores with the client, rendering from a cache; a static server is the
control. This program renders every page of the corpus once (fetched from
the simulator, so the bytes are identical) into a temporary folder, serves it
with nginx (Debian's ``nginx`` / ``nginx-light``: one process, no master,
access log off, keep-alive, 127.0.0.1 only, started and stopped here), and
runs the same modes against both servers. Where the ratio differs between
the two, the server's behaviour (its latency under load, its share of the
cores) is part of the figure; where it agrees, the figure is the client's.

nginx maps ``/x/v2/reply`` to ``main/<oid>/<pn>.json`` and
``/x/v2/reply/reply`` to ``reply/<oid>/<root>/<pn>.json`` by query
argument, and serves the two identity answers a worker asks for once per
crawl (``/x/frontend/finger/spi``: the device cookie the adapter sends with
every request, ``/x/web-interface/nav``: the WBI keys), also fetched from the
simulator; a request for anything else is a 404 (the mode then FAILS its
exact-output check, which says the scraper asked for a page the static
layout does not have: e.g. an identity or WBI endpoint of a newer adapter).
The target's default root paging (``auto``) fetches the very URLs the oracle
fetches on this open profile (page numbers, no signing), which nginx serves;
``--root-paging cursor`` (WBI-signed chains) would ask for pages the static
layout does not have.

Two hot-path figures, both with the fixed cost (a one-video job) taken out:
everything the user runs (coordinate, work, export, Redis), and the crawl
alone (the ``work`` step and Redis), which is what the oracle's whole run is.

Bytecode: the checkout's modules are compiled to ``__pycache__`` first
(``compileall``; ``--no-compile`` skips it). An installed scraper (pip, the
Docker image) has its .pyc files; a checkout run with
``PYTHONDONTWRITEBYTECODE=1`` would compile the project's sources in every
command it starts (~0.1 s of CPU per job, all of it charged to the scraper).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import _harness as h
import _machine
import _report
from _procs import free_port

from scraper.simulator.corpus import Corpus

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 60;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        default_type application/json;
        location = /x/v2/reply {{ try_files /main/$arg_oid/$arg_pn.json =404; }}
        location = /x/v2/reply/reply {{ try_files /reply/$arg_oid/$arg_root/$arg_pn.json =404; }}
        location = /x/frontend/finger/spi {{ try_files /identity/spi.json =404; }}
        location = /x/web-interface/nav {{ try_files /identity/nav.json =404; }}
        location = /_nginx_status {{ stub_status; }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not found:
        raise SystemExit("nginx not found: apt-get update && apt-get install -y nginx-light (or nginx)")
    return found


def page_path(www: Path, url: str) -> Path:
    parsed = urlparse(url)
    q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    if parsed.path == "/x/v2/reply":
        return www / "main" / q["oid"] / f"{q['pn']}.json"
    return www / "reply" / q["oid"] / q["root"] / f"{q['pn']}.json"


async def render(urls: list[str], www: Path, concurrency: int = 64) -> int:
    """Fetch every page from the simulator once and store the exact bytes."""
    import aiohttp  # noqa: PLC0415

    todo = iter(urls)
    count = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal count
            for url in todo:
                async with session.get(url) as response:
                    response.raise_for_status()
                    body = await response.read()
                path = page_path(www, url)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        # The identity answers (the same for every client of the simulator's open profile).
        for path, name in (("/x/frontend/finger/spi", "spi.json"), ("/x/web-interface/nav", "nav.json")):
            async with session.get(urls[0].split("/x/", 1)[0] + path) as response:
                response.raise_for_status()
                body = await response.read()
            (www / "identity").mkdir(parents=True, exist_ok=True)
            (www / "identity" / name).write_bytes(body)
    return count


class Nginx:
    """nginx serving ``www`` on a free 127.0.0.1 port; the Simulator's interface for run_mode."""

    def __init__(self, www: Path, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(tmp=tmp, www=www, port=self.port))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        import psutil  # noqa: PLC0415

        self.proc = subprocess.Popen(
            [nginx_binary(), "-c", str(self.conf), "-e", str(self.tmp / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                self.requests()
                break
            except OSError:
                time.sleep(0.05)
        self.handle = psutil.Process(self.proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def requests(self) -> int:
        with urllib.request.urlopen(f"{self.url}/_nginx_status", timeout=5) as response:  # noqa: S310 - ours
            text = response.read().decode()
        match = re.search(r"\n\s*(\d+)\s+(\d+)\s+(\d+)", text)
        return int(match.group(3)) if match else 0

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests(), "per_second": {}}

    def cpu_s(self) -> float:
        times = self.handle.cpu_times()
        return float(times.user + times.system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=333_000)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20,000 comments, 24 videos, 1 round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["bare", "scraper"], help="default: bare scraper")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--servers", nargs="+", default=["simulator", "nginx"], choices=["simulator", "nginx"])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--force", action="store_true", help="write results from a dirty tree")
    parser.add_argument("--name", help="results file stem (default cpu, or cpu_quick)")
    parser.add_argument(
        "--root-paging",
        choices=["cursor", "pages", "legacy"],
        help="the scraper's root paging (SCRAPER_TARGET_ROOT_PAGING; default: the target's TOML)",
    )
    parser.add_argument("--no-compile", action="store_true", help="do not compile the checkout's bytecode first")
    args = parser.parse_args()
    h.become_subreaper()  # orphans of the measured commands (a forkserver) are reaped and counted
    if args.quick:
        args.comments, args.videos = 20_000, 24
        if "--repeat" not in sys.argv:
            args.repeat = 1
    name = args.name or ("cpu_quick" if args.quick else "cpu")
    info = h.machine_info()
    if info["dirty"] and not args.force:
        _machine.refuse_dirty(False)
    if not args.no_compile:
        h.precompile()
    if args.root_paging:
        os.environ["SCRAPER_TARGET_ROOT_PAGING"] = args.root_paging  # the scraper's commands read it
    window = _machine.CpuWindow().start()
    corpus = Corpus.generate(seed=args.seed, videos=args.videos, comments=args.comments)
    workdir = Path(tempfile.mkdtemp(prefix="scraper-bench-cpu-"))
    job = h.Job.build(corpus, workdir)
    # The fixed cost (interpreters, imports, children, Redis start) measured on a
    # one-video job and taken out: what is left is the hot path's cost per page.
    small = h.Job.build(h.sub_corpus(corpus, 1), workdir / "small")
    print(f"# cpu per page: {job.pages:,} pages; {h.machine_line(info)}", flush=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in args.modes} for s in args.servers}
    fixed: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in args.modes} for s in args.servers}
    www = workdir / "www"
    pinning: dict[str, Any] = {}
    with h.Simulator(videos=args.videos, comments=args.comments, seed=args.seed, latency_ms=0) as sim:
        pinning["simulator"] = _machine.pin_simulator(sim.handle.pid)
        job.bind(sim.url)
        h.run_mode("bare", job, sim, timeout_s=args.timeout)  # fill the simulator's cache
        if "nginx" in args.servers:
            started = time.perf_counter()
            urls = (job.workdir / "urls.txt").read_text().split()
            rendered = asyncio.run(render(urls, www))
            print(f"  rendered {rendered:,} pages into {www} in {time.perf_counter() - started:.1f}s", flush=True)
        if "simulator" in args.servers:
            for _ in range(args.repeat):
                for mode in args.modes:
                    run(results, "simulator", mode, job, sim, args)
                    small.bind(sim.url)
                    run(fixed, "simulator", mode, small, sim, args)
    if "nginx" in args.servers:
        with Nginx(www, workdir / "nginx") as server:
            pinning["nginx"] = _machine.pin_simulator(server.handle.pid)
            job.bind(server.url)
            h.run_mode("bare", job, server, timeout_s=args.timeout)  # the page cache of the OS
            for _ in range(args.repeat):
                for mode in args.modes:
                    run(results, "nginx", mode, job, server, args)
                    small.bind(server.url)
                    run(fixed, "nginx", mode, small, server, args)
    shutil.rmtree(workdir, ignore_errors=True)
    info["cpu_over_run"] = window.stop()
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["pinning"] = pinning
    payload = {"command": "python benchmarks/cpu.py " + " ".join(sys.argv[1:]), "machine": info, "args": vars(args)}
    payload["servers"] = {s: {m: h.summarise(rows) for m, rows in by_mode.items()} for s, by_mode in results.items()}
    payload["fixed"] = {s: {m: h.summarise(rows) for m, rows in by_mode.items()} for s, by_mode in fixed.items()}
    for server, by_mode in payload["servers"].items():
        for mode, row in by_mode.items():
            base = payload["fixed"][server][mode]
            # Only where the job dwarfs the fixed cost's job: else noise decides the sign.
            if row["status"] == base["status"] == "ok" and row["pages"] >= max(20 * base["pages"], 2_000):
                row["marginal_cpu_ms_per_page"] = marginal(row, base, "cpu_ms_per_page")
                row["fixed_cpu_s"] = round(base["cpu_ms_per_page"] * base["pages"] / 1000, 3)
                if "crawl_cpu_ms_per_page" in row and "crawl_cpu_ms_per_page" in base:
                    row["marginal_crawl_cpu_ms_per_page"] = marginal(row, base, "crawl_cpu_ms_per_page")
    md = markdown(payload, job.pages)
    h.RESULTS_DIR.mkdir(exist_ok=True)
    (h.RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    (h.RESULTS_DIR / f"{name}.md").write_text(md)
    print("\n" + md)
    return 0 if all(r["status"] == "ok" for by in payload["servers"].values() for r in by.values()) else 1


def marginal(row: dict[str, Any], base: dict[str, Any], key: str) -> float:
    """CPU per page of the pages the big job has beyond the one-video job: its fixed cost out."""
    return round((row[key] * row["pages"] - base[key] * base["pages"]) / (row["pages"] - base["pages"]), 3)


def run(results: dict[str, Any], server: str, mode: str, job: h.Job, srv: Any, args: argparse.Namespace) -> None:
    row = h.run_mode(
        mode, job, srv, timeout_s=args.timeout, extra_args=h.mode_args(mode, args.processes, args.concurrency)
    )
    results[server][mode].append(row)
    shown = f"{row['cpu_ms_per_page']:.3f} ms/page" if row["status"] == "ok" else row.get("failure", "")
    print(f"  {server:9s} {mode:10s} {row['status']:6s} e2e {row['wall_s']:6.2f}s  {shown}", flush=True)


def markdown(payload: dict[str, Any], pages: int) -> str:
    info = payload["machine"]
    cpu = info.get("cpu_over_run") or {}
    lines = [
        f"# Client CPU per page: `{payload['command'].strip()}`",
        "",
        f"- code: commit {info.get('commit')}{' + UNCOMMITTED CHANGES (--force)' if info.get('dirty') else ''}",
        f"- machine: {h.machine_line(info)}; whole machine over the run {cpu.get('busy_pct')} % busy, "
        f"steal {cpu.get('steal_pct')} %",
        f"- {pages:,} pages, latency 0; P x C = {payload['args']['processes']} x {payload['args']['concurrency']}; "
        "client CPU = every process of the mode's tree (scraper: Redis, coordinate, export included); medians",
        f"- scraper root paging: {payload['args'].get('root_paging') or 'the target default'}; bytecode: "
        f"{'compiled on the fly (--no-compile)' if payload['args'].get('no_compile') else 'precompiled (compileall)'}",
        "",
    ]
    headers = [
        "server",
        "mode",
        "status",
        "client CPU ms/page (all)",
        "fixed CPU s (1-video job)",
        "hot path CPU ms/page (fixed cost out)",
        "crawl CPU ms/page (work + Redis, fixed cost out)",
        "server CPU ms/page",
        "end-to-end s (min / median / max)",
    ]
    body = []
    ratio_lines = []
    for server, by_mode in payload["servers"].items():
        for mode, row in by_mode.items():
            ok = row["status"] == "ok"
            server_cpu = row.get("server_cpu_ms_per_page")
            body.append(
                [
                    server,
                    f"`{mode}`",
                    row["status"],
                    _report.fmt(row["cpu_ms_per_page"], 3),
                    _report.fmt(row.get("fixed_cpu_s"), 2),
                    _report.fmt(row.get("marginal_cpu_ms_per_page"), 3),
                    _report.fmt(row.get("marginal_crawl_cpu_ms_per_page"), 3),
                    _report.fmt(server_cpu, 3),
                    _report._spread(row.get("wall")) if ok else row.get("failure", "")[:120],
                ]
            )
        bare, scraper = by_mode.get("bare"), by_mode.get("scraper")
        if bare and scraper and bare["status"] == scraper["status"] == "ok":
            ratio = scraper["cpu_ms_per_page"] / bare["cpu_ms_per_page"]
            line = f"- {server}: scraper / bare client CPU per page = {ratio:.2f}x with the fixed costs"
            if scraper.get("marginal_cpu_ms_per_page") and bare.get("marginal_cpu_ms_per_page"):
                hot = scraper["marginal_cpu_ms_per_page"] / bare["marginal_cpu_ms_per_page"]
                line += f", **{hot:.2f}x** on the hot path (target <= 1.2x: {'meets' if hot <= 1.2 else 'MISSES'})"
            crawl, oracle = scraper.get("marginal_crawl_cpu_ms_per_page"), bare.get("marginal_crawl_cpu_ms_per_page")
            if crawl and oracle:
                line += f"; the crawl alone (work + Redis, no coordinate or export): **{crawl / oracle:.2f}x**"
            ratio_lines.append(line)
            if crawl and scraper.get("marginal_cpu_ms_per_page"):
                ratio_lines.append(
                    f"  - {server}: of the scraper's {scraper['marginal_cpu_ms_per_page']:.3f} ms/page on the hot "
                    f"path, {crawl:.3f} is the crawl (Redis's share: "
                    f"{_report.fmt(scraper.get('redis_cpu_ms_per_page'), 3)} in the median run) and "
                    f"{scraper['marginal_cpu_ms_per_page'] - crawl:.3f} coordinate and export; "
                    f"the oracle's is {bare['marginal_cpu_ms_per_page']:.3f}"
                )
    lines += [_report.markdown_table(headers, body), "", *ratio_lines]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
