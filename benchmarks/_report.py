"""The tables of ``run.py``: per latency, every mode's spread; the seed's table beside ours; the ratios."""

from __future__ import annotations

from typing import Any

# The seed article's table: 332,830 comments over the internet (its own
# machine and network; seconds end to end as it reports them).
SEED_COMMENTS = 332_830
SEED_SECONDS = {"coroutines": 52.4, "processes": 63.0, "threads": 66.6}


def fmt(value: Any, digits: int = 0) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _spread(s: dict[str, float] | None) -> str:
    if not s:
        return "-"
    return f"{s['min']:.2f} / **{s['median']:.2f}** / {s['max']:.2f}"


def _busy(row: dict[str, Any]) -> str:
    runs = row.get("machine_runs") or [row.get("machine") or {}]
    busy = [m.get("busy_pct") for m in runs if m.get("busy_pct") is not None]
    steal = [m.get("steal_pct") for m in runs if m.get("steal_pct") is not None]
    if not busy:
        return "-"
    return f"{min(busy):.0f}-{max(busy):.0f} % / {max(steal or [0]):.1f} %"


def table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "mode",
        "status",
        "end-to-end s (min / median / max)",
        "fetch s (min / median / max)",
        "pages/s e2e",
        "pages/s fetch",
        "client CPU ms/page",
        "tree PSS MB",
        "peak RSS MB/proc",
        "server CPU ms/page",
        "machine busy / steal",
        "output",
    ]
    body = []
    for r in rows:
        ok = r["status"] == "ok"
        rss = fmt(r["max_proc_rss_mb"])
        if r.get("worker_child_max_rss_mb") is not None:
            rss = f"{fmt(r['worker_child_max_rss_mb'])} (worker child)"
        body.append(
            [
                f"`{r['mode']}`",
                r["status"] + (f" ({r.get('runs', 1)} runs)" if r.get("runs", 1) > 1 else ""),
                _spread(r.get("wall")) if ok and r.get("wall") else (fmt(r["wall_s"], 2) if ok else "-"),
                _spread(r.get("fetch")) if ok and r.get("fetch") else (fmt(r["fetch_s"], 2) if ok else "-"),
                fmt(r.get("pages_per_s")) if ok else "-",
                fmt(r.get("fetch_pages_per_s")) if ok else "-",
                fmt(r["cpu_ms_per_page"], 2),
                fmt(r.get("tree_pss_mb")),
                rss,
                fmt(r["server_cpu_ms_per_page"], 2),
                _busy(r),
                r["check"] if ok else f"{r['check']}; {r.get('failure', '')}".replace("|", "/")[:200],
            ]
        )
    return markdown_table(headers, body)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def seed_table(sections: list[dict[str, Any]]) -> str:
    """The seed's three modes beside ours: seconds and the ratio to coroutines, per latency."""
    headers = ["mode", f"seed: s ({SEED_COMMENTS:,} comments, internet)", "seed: / coroutines"]
    by_latency = []
    for section in sections:
        by_mode = {r["mode"]: r for r in section["rows"] if r["status"] == "ok"}
        by_latency.append((section["latency_ms"], by_mode))
        headers += [
            f"here {section['latency_ms']:g} ms: s (median, e2e)",
            f"here {section['latency_ms']:g} ms: / coroutines",
        ]
    body = []
    for mode in ("coroutines", "processes", "threads", "coroutines-uvloop", "bare", "scraper"):
        seed_s = SEED_SECONDS.get(mode)
        row = [
            f"`{mode}`",
            fmt(seed_s, 1) if seed_s else "-",
            f"{seed_s / SEED_SECONDS['coroutines']:.2f}" if seed_s else "-",
        ]
        for _, by_mode in by_latency:
            mine, base = by_mode.get(mode), by_mode.get("coroutines")
            if mine is None:
                row += ["-", "-"]
                continue
            seconds = mine["wall"]["median"] if mine.get("wall") else mine["wall_s"]
            base_s = (base["wall"]["median"] if base.get("wall") else base["wall_s"]) if base else None
            row += [fmt(seconds, 1), f"{seconds / base_s:.2f}" if base_s else "-"]
        body.append(row)
    return markdown_table(headers, body)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    by_mode = {r["mode"]: r for r in rows if r["status"] == "ok"}
    scraper, bare = by_mode.get("scraper"), by_mode.get("bare")
    lines = []
    if scraper and bare:
        e2e = scraper["pages_per_s"] / bare["pages_per_s"]
        fetch = scraper["fetch_pages_per_s"] / bare["fetch_pages_per_s"]
        cpu = scraper["cpu_ms_per_page"] / bare["cpu_ms_per_page"]
        lines.append(
            f"- scraper / bare (same P x C): **{e2e:.2f}x** end to end (medians; target >= 0.8x: "
            f"{'meets' if e2e >= 0.8 else 'MISSES'}), {fetch:.2f}x over the fetch interval; CPU per page "
            f"{scraper['cpu_ms_per_page']:.2f} vs {bare['cpu_ms_per_page']:.2f} ms = **{cpu:.2f}x** "
            f"(Redis included; target <= 1.2x: {'meets' if cpu <= 1.2 else 'MISSES'})"
        )
        if scraper.get("wall") and bare.get("wall"):
            worst = bare["wall"]["min"] / scraper["wall"]["max"]
            best = bare["wall"]["max"] / scraper["wall"]["min"]
            lines.append(f"  - range over the runs (worst / best pairing): {worst:.2f}x - {best:.2f}x")
    for peer in ("coroutines", "coroutines-uvloop", "threads", "processes", "aiomultiprocess", "gevent", "scrapy"):
        if scraper and peer in by_mode:
            lines.append(f"- scraper / {peer}: {scraper['pages_per_s'] / by_mode[peer]['pages_per_s']:.2f}x end to end")
    if scraper and scraper.get("worker_child_max_pss_mb"):
        lines.append(
            f"- scraper worker child: PSS {scraper['worker_child_max_pss_mb']:.0f} MB, peak RSS "
            f"{fmt(scraper.get('worker_child_max_rss_mb'))} MB; "
            f"Redis CPU {scraper.get('redis_cpu_ms_per_page')} ms/page"
        )
    return lines


def markdown(payload: dict[str, Any]) -> str:
    info = payload["machine"]
    job = payload.get("job") or {}
    args = payload.get("args") or {}
    dirty = " + UNCOMMITTED CHANGES (written with --force)" if info.get("dirty") else ""
    changed = (
        f" (tree changed during the run: commit {info.get('commit_at_end')} at the end)"
        if info.get("commit_at_end") and info.get("commit_at_end") != info.get("commit")
        else ""
    )
    cpu = info.get("cpu_over_run") or {}
    md = [
        f"# Benchmark results: `{payload['command']}`",
        "",
        f"- code: commit {info.get('commit')}{dirty}{changed}",
        f"- machine: {info.get('date')}; {info.get('nproc')} cores ({info.get('cpu_model')}); "
        f"Python {info.get('python')}; redis-server {info.get('redis_server')}",
        f"- condition: load average {info.get('loadavg_at_start')} at start, {info.get('loadavg_at_end')} at end; "
        f"the whole machine's CPU over the run {cpu.get('busy_pct')} % busy, steal {cpu.get('steal_pct')} %",
        "- " + ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items()),
        f"- job: {job.get('videos')} videos, {fmt(job.get('comments'))} comments, {fmt(job.get('pages'))} pages; "
        f"{args.get('repeat')} rounds (every mode once per round); P x C = {args.get('processes')} x "
        f"{args.get('concurrency')}",
        "- end to end: from the mode's start to its one output file written (scraper: redis-server start, "
        "coordinate, work, export, timed by the wrapper that runs them, without its own interpreter's start: "
        "`wrapper_wall_s` in the JSON); fetch: the mode's fetching interval (scraper: the `work` step); "
        "client CPU: every process of the mode's tree, Redis included (scraper: its three commands' trees "
        "and its Redis, not the benchmark's wrapper that runs them, whose CPU the JSON keeps as "
        "`wrapper_cpu_s`); PSS: the largest sum over the tree",
        "- bytecode: "
        + (
            "compiled on the fly (--no-compile)"
            if args.get("no_compile")
            else "the checkout precompiled (compileall) first, as an installed scraper has it"
        ),
        "",
        "## Modes",
        "",
        *[f"- `{m}`: {about}" for m, about in (payload.get("modes") or {}).items()],
        "",
        "## The seed's table beside ours",
        "",
        seed_table(payload["sections"]),
        "",
    ]
    for section in payload["sections"]:
        md += [
            f"## Latency {section['latency_ms']:g} ms",
            "",
            f"simulator pinning: {section.get('pinning')}",
            "",
            table(section["rows"]),
            "",
            *ratios(section["rows"]),
            "",
        ]
    return "\n".join(md) + "\n"
