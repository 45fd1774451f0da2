"""An offline evaluator of Kubernetes NetworkPolicies, for the policy tests.

It answers one question the way a policy-enforcing CNI would: may this
source open a connection to that destination and port? Pods are namespaces
plus labels (and named ports); addresses outside the pod network are IPs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.k8s.support import Obj


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels + named ports) or an address outside the pod network."""

    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str = ""


def _in_block(address: str, block: Obj) -> bool:
    ip = ipaddress.ip_address(address)
    network = ipaddress.ip_network(block["cidr"])
    if ip.version != network.version or ip not in network:
        return False
    excluded = (ipaddress.ip_network(e) for e in block.get("except", []))
    return not any(ip.version == e.version and ip in e for e in excluded)


def peer_matches(peers: list[Obj] | None, other: Endpoint, policy_namespace: str) -> bool:
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            if other.ip and _in_block(other.ip, peer["ipBlock"]):
                return True
            continue
        if other.ip:
            continue
        ns_selector = peer.get("namespaceSelector")
        ns_ok = (
            other.namespace == policy_namespace
            if ns_selector is None
            else selects(ns_selector, {"kubernetes.io/metadata.name": other.namespace})
        )
        pod_ok = "podSelector" not in peer or selects(peer["podSelector"], other.labels)
        if ns_ok and pod_ok:
            return True
    return False


def port_matches(ports: list[Obj] | None, port: int, protocol: str, destination: Endpoint) -> bool:
    if not ports:
        return True
    for entry in ports:
        wanted = entry.get("port")
        number = destination.ports.get(wanted) if isinstance(wanted, str) else wanted
        if entry.get("protocol", "TCP") == protocol and (wanted is None or number == port):
            return True
    return False


def allowed(policies: list[Obj], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Would the NetworkPolicies let source open a connection to destination:port?"""
    for direction, subject, other, peers_key, rules_key in (
        ("Egress", source, destination, "to", "egress"),
        ("Ingress", destination, source, "from", "ingress"),
    ):
        if subject.ip:
            continue  # outside the pod network (or a node-local resolver): no policy applies
        applicable = [
            p
            for p in policies
            if p["metadata"]["namespace"] == subject.namespace
            and selects(p["spec"]["podSelector"], subject.labels)
            and direction in p["spec"]["policyTypes"]
        ]
        if applicable and not any(
            peer_matches(rule.get(peers_key), other, policy["metadata"]["namespace"])
            and port_matches(rule.get("ports"), port, protocol, destination)
            for policy in applicable
            for rule in policy["spec"].get(rules_key, [])
        ):
            return False
    return True
