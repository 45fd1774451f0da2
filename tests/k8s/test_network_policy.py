"""The NetworkPolicies allow exactly the flows the scraper needs, on real cluster set-ups.

DNS must keep working where it is answered by a node-local address
(NodeLocal DNSCache 169.254.20.10, GKE Cloud DNS 169.254.169.254), and
Redis must admit KEDA from whatever namespace the cluster runs it in (AKS
add-on: kube-system, OpenShift: openshift-keda): both are settings of the
overlay (components/cluster-settings), rendered here with other values too.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.k8s.netpol import Endpoint, allowed
from tests.k8s.support import (
    NAMESPACE,
    Obj,
    by_role,
    containers,
    find,
    kustomize,
    pod_labels,
    pod_spec,
    redis,
    temporary_overlay,
)

NODE_LOCAL_DNS = ("169.254.20.10", "169.254.169.254")  # NodeLocal DNSCache, GKE Cloud DNS
PUBLIC = "93.184.216.34"


def pod(objects: list[Obj], role: str) -> Endpoint:
    workload = redis(objects) if role == "redis" else by_role(objects, role)
    ports = {p["name"]: p["containerPort"] for c in containers(pod_spec(workload)) for p in c.get("ports", [])}
    return Endpoint(NAMESPACE, pod_labels(workload), ports)


def internet(ip: str) -> Endpoint:
    return Endpoint(ip=ip)


def settings_overlay(tmp_path: Path, **settings: str) -> list[Obj]:
    """prod's manifests with other cluster settings, as an operator would set them."""
    defaults = {
        "keda-namespace": "keda",
        "dns-namespace": "kube-system",
        "node-local-dns-cidr": "169.254.0.0/16",
        "dns-service-cidr": "169.254.0.0/16",
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-settings", "annotations": {"config.kubernetes.io/local-config": "true"}},
        "data": {**defaults, **settings},
    }
    directory = temporary_overlay(
        tmp_path,
        ["base"],
        ["components/cluster-settings"],
        files={"cluster-settings.yaml": config},
    )
    return kustomize(directory)


def test_network_policies_allow_exactly_the_needed_flows(renders: dict[str, list[Obj]]) -> None:
    objects = renders["refresh"]
    policies = find(objects, "NetworkPolicy")
    worker, coordinator, refresh, exporter, redis_pod = (
        pod(objects, r) for r in ("worker", "coordinator", "refresh", "exporter", "redis")
    )
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53})
    keda = Endpoint("keda", {"app": "keda-operator"})
    prometheus = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
    stranger = Endpoint("default", {"app": "anything"})

    for client in (worker, coordinator, refresh, exporter):
        assert allowed(policies, client, redis_pod, 6379)
        assert not allowed(policies, client, redis_pod, 6380)
    for any_pod in (worker, coordinator, refresh, exporter, redis_pod):
        for protocol in ("UDP", "TCP"):
            assert allowed(policies, any_pod, dns, 53, protocol)
            for address in NODE_LOCAL_DNS:
                assert allowed(policies, any_pod, internet(address), 53, protocol), address
        # Port 53 only: the metadata service stays closed.
        assert not allowed(policies, any_pod, internet("169.254.169.254"), 80)
        assert not allowed(policies, any_pod, dns, 8080)
    assert allowed(policies, keda, redis_pod, 6379)
    assert not allowed(policies, stranger, redis_pod, 6379)
    assert not allowed(policies, prometheus, redis_pod, 6379)
    assert not allowed(policies, Endpoint("kube-system", {"app": "keda-operator"}), redis_pod, 6379)

    assert allowed(policies, worker, internet(PUBLIC), 443)
    assert allowed(policies, worker, internet(PUBLIC), 80)
    assert allowed(policies, worker, internet("2606:2800:220:1::1"), 443)
    assert not allowed(policies, worker, internet(PUBLIC), 22)
    for private in ("10.0.0.7", "172.16.4.2", "192.168.1.1", "169.254.169.254", "fd00::1"):
        assert not allowed(policies, worker, internet(private), 443), private
    assert not allowed(policies, worker, stranger, 443)
    # Seeding writes to Redis and fetches nothing.
    for quiet in (coordinator, refresh, exporter, redis_pod):
        assert not allowed(policies, quiet, internet(PUBLIC), 443)

    assert allowed(policies, prometheus, worker, 9100)
    assert allowed(policies, prometheus, exporter, 9101)
    assert not allowed(policies, prometheus, coordinator, 9100)
    assert not allowed(policies, internet(PUBLIC), worker, 9100)


@pytest.mark.parametrize(
    ("keda_namespace", "dns_namespace"),
    [("kube-system", "kube-system"), ("openshift-keda", "openshift-dns")],
)
def test_keda_and_dns_namespaces_are_settings(keda_namespace: str, dns_namespace: str, tmp_path: Path) -> None:
    objects = settings_overlay(tmp_path, **{"keda-namespace": keda_namespace, "dns-namespace": dns_namespace})
    policies = find(objects, "NetworkPolicy")
    redis_pod, worker = pod(objects, "redis"), pod(objects, "worker")
    assert allowed(policies, Endpoint(keda_namespace, {"app": "keda-operator"}), redis_pod, 6379)
    assert not allowed(policies, Endpoint("keda", {"app": "keda-operator"}), redis_pod, 6379)
    # OpenShift's DNS pods listen on 5353 behind the dns-default Service's 53.
    dns_pod = Endpoint(dns_namespace, {"dns.operator.openshift.io/daemonset-dns": "default"})
    for port in (53, 5353):
        assert allowed(policies, worker, dns_pod, port, "UDP")
    if dns_namespace != "kube-system":
        assert not allowed(policies, worker, Endpoint("kube-system", {"k8s-app": "kube-dns"}), 53, "UDP")


def test_node_local_dns_addresses_are_settings(tmp_path: Path) -> None:
    # NodeLocal DNSCache only, and in iptables mode: it answers on the
    # kube-dns ClusterIP, which no pod rule matches.
    objects = settings_overlay(
        tmp_path, **{"node-local-dns-cidr": "169.254.20.10/32", "dns-service-cidr": "10.96.0.10/32"}
    )
    policies = find(objects, "NetworkPolicy")
    worker = pod(objects, "worker")
    assert allowed(policies, worker, internet("169.254.20.10"), 53, "UDP")
    assert allowed(policies, worker, internet("10.96.0.10"), 53, "UDP")
    assert not allowed(policies, worker, internet("169.254.169.254"), 53, "UDP")
    assert not allowed(policies, worker, internet("10.96.0.11"), 53, "UDP")


def test_evaluator_catches_dns_limited_to_kube_system_pods(renders: dict[str, list[Obj]]) -> None:
    # The policy this project shipped before: port 53 to kube-system pods only.
    broken = copy.deepcopy(renders["prod"])
    (dns_policy,) = find(broken, "NetworkPolicy", "allow-dns")
    dns_policy["spec"]["egress"] = dns_policy["spec"]["egress"][:1]
    policies = find(broken, "NetworkPolicy")
    worker = pod(broken, "worker")
    assert allowed(policies, worker, Endpoint("kube-system", {"k8s-app": "kube-dns"}), 53, "UDP")
    assert not allowed(policies, worker, internet("169.254.20.10"), 53, "UDP")


def test_shipped_cluster_settings_are_the_base_defaults(renders: dict[str, list[Obj]]) -> None:
    # The base (and dev, which has no settings file) must behave like an
    # untouched prod: the defaults in networkpolicy.yaml and in
    # overlays/prod/cluster-settings.yaml are one set of values.
    assert find(renders["prod"], "NetworkPolicy") == find(renders["base"], "NetworkPolicy")
    assert find(renders["dev"], "NetworkPolicy") == find(renders["base"], "NetworkPolicy")
