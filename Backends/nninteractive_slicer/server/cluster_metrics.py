"""Metrics of a replicated server: each replica publishes its own, and a scrape of any replica sees them all.

Ray's proxy sends a scrape of ``/metrics`` to one replica, so a replica's own counters would be a random
sample of the deployment. Instead every replica publishes its exposition to one small named actor every
few seconds, and ``/metrics`` answers with all of them, each series labelled with its ``replica``. A
replica that stopped publishing (it died) drops out after :data:`STALE_S`; its replacement is a new
series, as after a server restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import ray
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families

HUB_NAME = "nninteractive-metrics"
PUBLISH_S = 2.0
STALE_S = 30.0


@ray.remote(num_cpus=0)
class MetricsHub:
    """The latest exposition of every replica."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[float, bytes]] = {}

    def publish(self, replica: str, exposition: bytes) -> None:
        self._latest[replica] = (time.monotonic(), exposition)

    def collect(self) -> dict[str, bytes]:
        now = time.monotonic()
        return {r: text for r, (at, text) in self._latest.items() if now - at < STALE_S}


def hub() -> ray.actor.ActorHandle:
    """The deployment's hub, created by the first replica; detached, so no replica's death takes it along."""
    return MetricsHub.options(  # type: ignore[attr-defined]  # @ray.remote made it an actor class
        name=HUB_NAME, get_if_exists=True, lifetime="detached").remote()


async def publish_forever(replica: str, render: Callable[[], bytes]) -> None:
    handle = hub()
    while True:
        await handle.publish.remote(replica, render())
        await asyncio.sleep(PUBLISH_S)


def deployment_render(replica: str, render: Callable[[], bytes]) -> Callable[[], bytes]:
    """A render of the whole deployment for ``/metrics`` (called in a worker thread): this replica fresh, the
    others as last published."""

    def render_all() -> bytes:
        expositions = {**ray.get(hub().collect.remote(), timeout=10), replica: render()}
        registry = CollectorRegistry()
        registry.register(_Labelled(expositions))
        return generate_latest(registry)

    return render_all


class _Labelled:
    """A collector of several replicas' expositions, merged per metric, each sample labelled by replica."""

    def __init__(self, expositions: dict[str, bytes]) -> None:
        self.expositions = expositions

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for replica, text in sorted(self.expositions.items()):
            for family in text_string_to_metric_families(text.decode()):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                             family.unit))
                into.samples += [s._replace(labels={**s.labels, "replica": replica}) for s in family.samples]
        return merged.values()
