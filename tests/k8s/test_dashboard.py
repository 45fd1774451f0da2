"""The Grafana dashboard queries what is exported, as its Prometheus type allows.

Checked for every panel: each metric exists (scraper/metrics.py is the list),
a counter appears only inside rate()/irate()/increase(), a gauge never does,
a histogram's buckets only feed histogram_quantile(), and the panel's unit
says what the query returns (a per-second rate, a per-minute rate, a count,
seconds). The target variable comes from the exporter, which runs while
KEDA has the workers at zero.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

from scraper.metrics import METRIC_TYPES, QUEUE_METRIC_TYPES
from tests.k8s.netpol import selects
from tests.k8s.support import K8S, Obj, find, one, pod_labels, workloads

DASHBOARD = K8S / "dashboards" / "scraper.json"
_METRIC = re.compile(r"\bscraper_[a-z0-9_]+")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
_RATE_FUNCTIONS = ("rate", "irate", "increase")
# Grafana unit ids by what a query returns.
UNITS = {
    "per_second": {"ops", "reqps", "rps", "wps", "cps"},
    "per_minute": {"opm", "rpm", "wpm"},
    "count": {"short", "none", "locale"},
    "seconds": {"s", "ms"},
}


def load() -> Obj:
    return dict(json.loads(DASHBOARD.read_text()))


def queries(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


def metric_type(name: str) -> tuple[str, str] | None:
    """(declared name, type) of a name in a query, histogram suffixes folded."""
    if name in METRIC_TYPES:
        return name, METRIC_TYPES[name]
    base = _HISTOGRAM_SUFFIX.sub("", name)
    if METRIC_TYPES.get(base) == "histogram":
        return base, "histogram"
    return None


def wrapped_in_rate(expr: str, start: int) -> bool:
    """Is the selector starting at `start` the direct argument of rate()/irate()/increase()?"""
    before = expr[:start].rstrip()
    return any(re.search(rf"\b{f}\($", before) for f in _RATE_FUNCTIONS)


def type_problems(where: str, expr: str) -> list[str]:
    problems = []
    for match in _METRIC.finditer(expr):
        name = match.group(0)
        found = metric_type(name)
        if found is None:
            problems.append(f"{where}: unknown metric {name}")
            continue
        _, kind = found
        in_rate = wrapped_in_rate(expr, match.start())
        if kind == "counter" and not in_rate:
            problems.append(f"{where}: counter {name} outside rate()/increase(): {expr}")
        if kind == "gauge" and in_rate:
            problems.append(f"{where}: rate() over a gauge {name}: {expr}")
        if kind == "histogram":
            if not in_rate or name.endswith(("_seconds", "_duration")):
                problems.append(f"{where}: histogram {name} outside rate(): {expr}")
            if name.endswith("_bucket") and "histogram_quantile" not in expr:
                problems.append(f"{where}: {name} outside histogram_quantile: {expr}")
    return problems


def returns(expr: str) -> str:
    """What a panel query measures, for its unit."""
    if "histogram_quantile" in expr or re.search(r"_seconds_sum\b", expr):
        return "seconds"
    names = _METRIC.findall(expr)
    if any(re.search(rf"\b(rate|irate)\(\s*{n}", expr) for n in names) or any(n.endswith("_per_second") for n in names):
        return "per_minute" if re.search(r"\*\s*60\b", expr) else "per_second"
    return "count"


def dashboard_problems(dashboard: Obj) -> list[str]:
    problems = []
    used = set()
    for expr in queries(dashboard):
        used |= {found[0] for name in _METRIC.findall(expr) if (found := metric_type(name))}
    problems += [f"dashboard has no panel for {name}" for name in sorted(set(METRIC_TYPES) - used)]
    for panel in dashboard["panels"]:
        targets = panel.get("targets", [])
        where = f"panel {panel['title']!r}"
        measures = {returns(t["expr"]) for t in targets}
        for target in targets:
            problems += type_problems(where, target["expr"])
        if len(measures) > 1:
            problems.append(f"{where}: queries measure different things {sorted(measures)}")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        for measure in measures:
            if unit not in UNITS[measure]:
                problems.append(f"{where}: unit {unit!r} for a {measure} query (wants one of {sorted(UNITS[measure])})")
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == "target":
            names = set(_METRIC.findall(variable["definition"])) | set(_METRIC.findall(variable["query"]["query"]))
            if not names or not names <= set(QUEUE_METRIC_TYPES):
                problems.append(f"target variable from {sorted(names)}: empties when the workers are at zero")
    return problems


def test_every_panel_queries_exported_metrics_as_their_type_allows() -> None:
    dashboard = load()
    assert dashboard_problems(dashboard) == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("pages/s", "comments/s", "lag", "in flight", "retries", "duration", "bans", "rate limit"):
        assert topic in titles, topic


def test_pages_per_second_counts_fetched_pages_only() -> None:
    (panel,) = [p for p in load()["panels"] if p["title"] == "Pages/s"]
    (target,) = panel["targets"]
    # Retries and dead letters are settled pages too, but no page fetched.
    assert 'status="ok"' in target["expr"]


def test_dashboard_check_catches_type_unit_and_variable_mistakes() -> None:
    broken = copy.deepcopy(load())
    panels = {p["title"]: p for p in broken["panels"]}
    panels["Pages/s"]["targets"][0]["expr"] = "sum(rate(scraper_pages_fetched_total[5m]))"
    panels["Dead letters"]["targets"][0]["expr"] = "rate(scraper_queue_lag[5m])"
    panels["Comments/s"]["targets"][0]["expr"] = "sum(scraper_comments_total)"
    panels["Live consumers"]["fieldConfig"]["defaults"]["unit"] = "reqps"
    (variable,) = [v for v in broken["templating"]["list"] if v["name"] == "target"]
    variable["query"]["query"] = variable["definition"] = "label_values(scraper_pages_total, target)"
    problems = dashboard_problems(broken)
    assert any("unknown metric scraper_pages_fetched_total" in p for p in problems), problems
    assert any("rate() over a gauge scraper_queue_lag" in p for p in problems), problems
    assert any("counter scraper_comments_total outside rate()" in p for p in problems), problems
    assert any("'Live consumers'" in p and "unit 'reqps'" in p for p in problems), problems
    assert any("target variable" in p for p in problems), problems


def test_monitoring_overlay_ships_the_dashboard_and_scrapes_both_ports(renders: dict[str, list[Obj]]) -> None:
    objects = renders["monitoring"]
    config_map = one(objects, "ConfigMap", "scraper-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["scraper.json"]) == load()

    (monitor,) = find(objects, "PodMonitor", "scraper")
    scraped = [w for w in workloads(objects) if selects(monitor["spec"]["selector"], pod_labels(w))]
    assert {pod_labels(w)["app.kubernetes.io/component"] for w in scraped} == {"worker", "exporter"}
    port_names = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for workload in scraped:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        assert port_names <= {p["name"] for p in container["ports"]}
