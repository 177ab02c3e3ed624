"""Consumer lag per partition, sampled by each worker for the partitions assigned to it.

Lag is the Kafka definition: log end offset (highwater) minus the group's committed offset. Each
worker exports only its own partitions, so `sum by (topic, partition)` over all workers is the
group's lag even while partitions move between replicas (a revoked partition's series is removed).
The dashboard panel "Consumer lag per partition" and the alerts MindstreamConsumerStalled /
MindstreamConsumerLagGrowing (infra/prometheus/rules.yml) read this gauge.

Faust has no public committed-offset accessor; it keeps the last offsets it committed in
`Consumer._committed_offset` (faust-streaming is pinned to 0.15.3). Before the first commit of a
partition the fetch position stands in for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "mindstream_consumer_lag",
    "Messages not yet processed on a partition: highwater minus committed offset, per assigned partition.",
    ["topic", "partition"],
)

# Faust's own topics (table changelogs, repartitions) are consumed by its table manager, not by an agent
# committing offsets; their "lag" would be noise.
INTERNAL_SUFFIXES = ("-changelog", "-repartition")


def is_source_topic(topic: str, topics: set[str] | None) -> bool:
    if topics is not None:
        return topic in topics
    return not topic.endswith(INTERNAL_SUFFIXES)


class LagSampler:
    """Samples the lag of a Faust consumer's assigned partitions into `gauge`."""

    def __init__(self, gauge: Gauge = CONSUMER_LAG, topics: Iterable[str] | None = None) -> None:
        self.gauge = gauge
        self.topics = set(topics) if topics is not None else None
        self._exported: set[tuple[str, int]] = set()

    async def sample(self, consumer: Any) -> dict[tuple[str, int], int]:
        """Update the gauge from `consumer` (a faust Consumer); returns {(topic, partition): lag}."""
        assigned = [tp for tp in consumer.assignment() if is_source_topic(tp.topic, self.topics)]
        highwaters = await consumer.highwaters(*assigned) if assigned else {}
        lags: dict[tuple[str, int], int] = {}
        for tp in assigned:
            end = highwaters.get(tp)
            if end is None:
                continue
            committed = consumer._committed_offset.get(tp)
            if committed is None:
                committed = await consumer.position(tp)
            if committed is None:
                continue
            lags[(tp.topic, tp.partition)] = max(0, int(end) - int(committed))
        for topic, partition in self._exported - lags.keys():
            # Revoked: another worker exports it now; keeping ours would double-count it in sums.
            self.gauge.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.gauge.labels(topic=topic, partition=str(partition)).set(lag)
        self._exported = set(lags)
        return lags


def install(app: Any, interval_s: float = 5.0, topics: Iterable[str] | None = None,
            gauge: Gauge = CONSUMER_LAG) -> LagSampler:
    """Declare a Faust timer on `app` that samples consumer lag every `interval_s` seconds.

    Call before the app starts (timers are declared like agents). `topics`: the agents' source topic
    names; by default every assigned topic except Faust's changelogs and repartitions.
    """
    sampler = LagSampler(gauge, topics)

    @app.timer(interval=interval_s)
    async def sample_consumer_lag() -> None:
        try:
            await sampler.sample(app.consumer)
        except Exception as e:  # a rebalance in progress or a broker hiccup: the next tick retries
            log.debug("consumer lag sample failed: %r", e)

    return sampler
