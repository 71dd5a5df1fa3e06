"""A container record's `NetworkSettings`, as Docker shows it: empty at create, the network service's answer
while it runs, the networks without addresses once it stopped."""

from __future__ import annotations

from typing import Any

from skiffbox.guest.containers.store import Container


def empty(endpoints: dict[str, Any]) -> dict[str, Any]:
    """Settings for a created container: one blank endpoint per requested network (the request's fields kept)."""
    nets = {}
    for name, ep in endpoints.items():
        ep = dict(ep or {})
        for k, v in (("IPAMConfig", None), ("Links", None), ("Aliases", None), ("MacAddress", ""), ("DriverOpts", None),
                     ("NetworkID", ""), ("EndpointID", ""), ("Gateway", ""), ("IPAddress", ""), ("IPPrefixLen", 0),
                     ("IPv6Gateway", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0), ("DNSNames", None)):
            ep.setdefault(k, v)
        nets[name] = ep
    ns = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
          "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
          "Networks": nets}
    legacy_fields(ns)
    return ns


def apply_result(c: Container, result: dict[str, Any]) -> None:
    """The network service's `networks` and `ports` (from `setup`) into the record."""
    ns = c.rec.setdefault("NetworkSettings", empty({}))
    if result.get("networks") is not None:
        ns["Networks"] = result["networks"]
        legacy_fields(ns)
    if result.get("ports") is not None:
        ns["Ports"] = result["ports"]


def clear_endpoints(ns: dict[str, Any]) -> None:
    """A stopped container keeps its networks but not its addresses (as Docker shows it)."""
    for ep in (ns.get("Networks") or {}).values():
        if isinstance(ep, dict):
            ep.update(EndpointID="", Gateway="", IPAddress="", IPPrefixLen=0, IPv6Gateway="", GlobalIPv6Address="",
                      GlobalIPv6PrefixLen=0, MacAddress="")
    ns["Ports"] = {}
    ns["SandboxKey"] = ""
    legacy_fields(ns)


def legacy_fields(ns: dict[str, Any]) -> None:
    """The top-level IPAddress/Gateway/… fields mirror the `bridge` endpoint (older clients read them)."""
    ep = (ns.get("Networks") or {}).get("bridge") or {}
    for k, d in (("EndpointID", ""), ("Gateway", ""), ("GlobalIPv6Address", ""), ("GlobalIPv6PrefixLen", 0),
                 ("IPAddress", ""), ("IPPrefixLen", 0), ("IPv6Gateway", ""), ("MacAddress", "")):
        ns[k] = ep.get(k, d)
