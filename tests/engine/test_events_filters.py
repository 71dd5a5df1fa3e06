"""The event bus and Docker's event filters, called directly (no daemon): what `/events` and `/info` use."""

from __future__ import annotations

import asyncio

from skiffbox.guest.events import EventBus, matches


def test_filters_by_type_action_name_prefix_label_and_scope() -> None:
    bus = EventBus()
    ev = bus.publish("container", "exec_start: sh", "abcdef0123", {"name": "web", "tier": "front"})
    assert matches(ev, {})
    assert matches(ev, {"type": ["container"], "event": ["exec_start"]})
    assert matches(ev, {"container": ["web"]}) and matches(ev, {"container": ["abcd"]})
    assert not matches(ev, {"container": ["db"]})
    assert not matches(ev, {"image": ["web"]})
    assert matches(ev, {"label": ["tier=front"]}) and not matches(ev, {"label": ["tier=back"]})
    assert matches(ev, {"scope": ["local"]}) and not matches(ev, {"scope": ["swarm"]})


def test_listeners_counts_open_subscriptions() -> None:
    async def run() -> list[int]:
        bus = EventBus()
        seen = [bus.listeners()]
        q1, q2 = bus.subscribe(), bus.subscribe()
        seen.append(bus.listeners())
        bus.unsubscribe(q1)
        seen.append(bus.listeners())
        bus.unsubscribe(q2)
        return seen

    assert asyncio.run(run()) == [0, 2, 1]
