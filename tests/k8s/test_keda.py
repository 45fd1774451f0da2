"""KEDA scales the workers on the tasks stream, from the version floor the docs state.

The floor is stated once (k8s/README.md) and derived here from the trigger
options the manifests use, so a new option that needs a newer KEDA, or a
document that promises an older one, fails a test.
"""

from __future__ import annotations

import copy
import re

import pytest

from scraper.keys import CONSUMER_GROUP, TargetKeys
from tests.k8s.support import (
    K8S,
    NAMESPACE,
    ROOT,
    TARGET,
    WITH_KEDA,
    Obj,
    environment,
    main_container,
    one,
    redis,
    worker,
)

# The KEDA release that first accepts each redis-streams option as we use it.
#   lagCount            lag mode (XINFO GROUPS), KEDA 2.11 (kedacore/keda#4592)
#   streamLength        XLEN mode without a consumerGroup, 2.11 (kedacore/keda#4390)
#   activationLagCount  "0" (wake on one task) is refused by 2.16.0 and 2.16.1
#                       ("activationLagCount required"), fixed in 2.17.0
#                       (kedacore/keda#6478, #6481)
#   pendingEntriesCount the original mode, 2.0
OPTION_FLOOR = {
    "lagCount": (2, 11),
    "streamLength": (2, 11),
    "activationLagCount": (2, 17),
    "pendingEntriesCount": (2, 0),
}
FLOOR_SOURCE = K8S / "README.md"
# Where a sentence may promise a KEDA version to a user.
DOCUMENTS = [ROOT / "README.md", *K8S.rglob("*.md"), *K8S.rglob("*.yaml")]
_PROMISE = re.compile(
    r"KEDA[^\n]{0,40}?(?:(?:>=|≥)\s*(\d+\.\d+)|\b(\d+\.\d+)(?:\.\d+)?\s*(?:\+|or newer|or later))", re.IGNORECASE
)


def required_floor(scaled: Obj) -> tuple[int, int]:
    floor = (2, 0)
    for trigger in scaled["spec"]["triggers"]:
        for option in trigger["metadata"]:
            floor = max(floor, OPTION_FLOOR.get(option, (2, 0)))
    return floor


def stated_floor() -> tuple[int, int]:
    text = FLOOR_SOURCE.read_text()
    match = re.search(r"\[KEDA\]\([^)]*\) (\d+)\.(\d+) or newer", text)
    assert match, f"{FLOOR_SOURCE} does not state the KEDA floor as '[KEDA](...) X.Y or newer'"
    return int(match.group(1)), int(match.group(2))


def test_keda_floor_is_stated_once_and_matches_the_triggers(renders: dict[str, list[Obj]]) -> None:
    floor = stated_floor()
    for name in WITH_KEDA:
        assert required_floor(one(renders[name], "ScaledObject", "scraper-worker")) == floor, name
    # Every promise of a KEDA version anywhere in the docs and manifests is that floor.
    for document in DOCUMENTS:
        for match in _PROMISE.finditer(document.read_text()):
            version = tuple(int(p) for p in (match.group(1) or match.group(2)).split("."))
            assert version == floor, f"{document.relative_to(ROOT)}: {match.group(0)!r} (floor is {floor})"


def test_floor_check_catches_an_option_newer_than_the_floor(renders: dict[str, list[Obj]]) -> None:
    scaled = copy.deepcopy(one(renders["prod"], "ScaledObject", "scraper-worker"))
    for trigger in scaled["spec"]["triggers"]:
        trigger["metadata"].pop("activationLagCount", None)
    assert required_floor(scaled) == (2, 11) != stated_floor()
    assert _PROMISE.search("Needs KEDA (>= 2.10, for lagCount)")
    assert _PROMISE.search("[KEDA](https://keda.sh) 2.12 or newer")
    assert not _PROMISE.search("KEDA reads 0; lagCount arrived in 2.11")


@pytest.mark.parametrize("name", sorted(WITH_KEDA))
def test_keda_scales_the_worker_on_backlog_and_stream_length(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    scaled = one(objects, "ScaledObject", "scraper-worker")
    spec = scaled["spec"]
    ref = spec["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", worker(objects)["metadata"]["name"])
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 20
    scale_down = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 300

    keys = TargetKeys(TARGET)
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    for trigger in triggers:
        assert trigger["metadata"]["stream"] == keys.tasks

    lag = [t for t in triggers if "lagCount" in t["metadata"]]
    assert len(lag) == 1, "exactly one trigger scales on the lag"
    assert lag[0]["metadata"]["consumerGroup"] == CONSUMER_GROUP
    assert int(lag[0]["metadata"]["lagCount"]) > 0
    # KEDA activates when lag > activationLagCount: anything above 0 would
    # leave a lone undelivered task waiting forever with zero workers.
    assert lag[0]["metadata"]["activationLagCount"] == "0"

    # Scaling must not depend on the lag alone: Redis reports it as NULL
    # (KEDA reads 0) while a settle deletes the last-delivered entry with
    # older ones pending (tests/test_queue_counts.py). XLEN never reads NULL
    # and, settled entries being deleted, counts exactly the work left.
    length = [t for t in triggers if "streamLength" in t["metadata"]]
    assert len(length) == 1, "one trigger on XLEN, the count that cannot read NULL"
    assert "consumerGroup" not in length[0]["metadata"], "with a consumerGroup KEDA ignores streamLength"
    # In-flight entries are part of XLEN: the target must exceed what one pod
    # holds, or in-flight work alone would add pods.
    env = environment(main_container(worker(objects)), objects)
    per_pod = int(env["SCRAPER_PROCESSES"]) * int(env["SCRAPER_CONCURRENCY"])
    assert int(length[0]["metadata"]["streamLength"]) >= 2 * per_pod
    assert int(length[0]["metadata"]["streamLength"]) >= int(lag[0]["metadata"]["lagCount"])


@pytest.mark.parametrize("name", sorted(WITH_KEDA))
def test_keda_reaches_redis_with_the_redis_password(name: str, renders: dict[str, list[Obj]]) -> None:
    objects = renders[name]
    scaled = one(objects, "ScaledObject", "scraper-worker")
    secret_volume = next(v for v in redis(objects)["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    (item,) = secret_volume["secret"]["items"]
    for trigger in scaled["spec"]["triggers"]:
        host, _, port = trigger["metadata"]["address"].rpartition(":")
        service_name, namespace, svc = host.split(".")
        assert (namespace, svc) == (NAMESPACE, "svc"), "KEDA runs in its own namespace: qualify the name"
        service = one(objects, "Service", service_name)
        assert {"name": "redis", "port": int(port), "targetPort": "redis"} in service["spec"]["ports"]
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert (refs["password"]["name"], refs["password"]["key"]) == (
            secret_volume["secret"]["secretName"],
            item["key"],
        )
