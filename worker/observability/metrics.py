"""Prometheus metrics of one worker.

Each worker owns its own ``CollectorRegistry`` (not prometheus_client's global one), so several
workers in one process (the tests, the demo) neither collide nor share counts.

Latency is measured three ways, because they answer different questions:

* ``modelreg_event_latency_seconds``: from the Kafka record's timestamp (set by the publisher,
  ``CreateTime``) to the commit of the batch's offsets - what a publisher waits until its event is
  in the registry, queueing included. Publisher clock skew can make it slightly off; negative
  values are clamped to zero.
* ``modelreg_fetch_delay_seconds``: from the timestamp of each fetched batch's oldest record to
  the moment the worker's handler received the batch - the part of that wait spent in the
  broker, on the network and in the consumer's fetch loop, before the worker could apply
  anything. When it is most of the latency, look at the broker before the worker.
* ``modelreg_batch_apply_seconds``: the duration of the successful ``apply_batch`` transaction
  alone - the worker's own cost, independent of lag.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from worker.persistence.registry import BatchReport

#: The outcome label of an event the worker dead-lettered (``rejected`` in the BatchReport).
DEAD_LETTERED: Final = "dead_lettered"
OUTCOME_LABELS: Final = {"rejected": DEAD_LETTERED}
#: Type label of a record that could not even be decoded into an event.
UNDECODABLE_TYPE: Final = "unknown"

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
BATCH_SIZE_BUCKETS: Final = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


def _ages_s(timestamps_ms: Iterable[int | None], now: float | None) -> Iterator[float]:
    """Seconds since each Kafka record timestamp; records without one are skipped, and a
    timestamp ahead of this clock (publisher skew) counts as zero."""
    now_ms = (time.time() if now is None else now) * 1000
    for ts in timestamps_ms:
        if ts is not None and ts > 0:
            yield max(0.0, (now_ms - ts) / 1000)


class WorkerMetrics:
    """The worker's metrics; the transport layer calls the ``record_*`` methods."""

    content_type: Final = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "modelreg_events",
            "Inbound events processed, by topic, event type and outcome"
            " (applied, duplicate, stale, dead_lettered).",
            ["topic", "type", "outcome"],
            registry=r,
        )
        self.event_latency = Histogram(
            "modelreg_event_latency_seconds",
            "From the Kafka record timestamp to the commit of its batch (publish-to-commit).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fetch_delay = Histogram(
            "modelreg_fetch_delay_seconds",
            "Age of each fetched batch's oldest record when the worker received it"
            " (from its Kafka record timestamp).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_apply = Histogram(
            "modelreg_batch_apply_seconds",
            "Duration of one successful apply_batch transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelreg_batch_size",
            "Records per consumed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "modelreg_outbox_backlog",
            "Outbox rows waiting to be published (refreshed on every scrape).",
            registry=r,
        )
        self.outbox_published = Counter(
            "modelreg_outbox_published",
            "Outbox rows (lifecycle events, dead letters) the relay published and the broker"
            " acknowledged.",
            registry=r,
        )
        self.outbox_drains = Counter(
            "modelreg_outbox_drains",
            "Relay transactions that published outbox rows; published / drains is how many"
            " rows each took.",
            registry=r,
        )
        self.database_retries = Counter(
            "modelreg_database_retries",
            "Failed attempts to apply a batch that were retried (database outages, conflicts).",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "modelreg_consumer_lag",
            "Records behind the end of each assigned input partition (refreshed on every scrape).",
            ["topic", "partition"],
            registry=r,
        )

    def record_batch(self, report: BatchReport, records: int, seconds: float) -> None:
        """Count the outcomes of one applied batch."""
        self.batch_size.observe(records)
        self.batch_apply.observe(seconds)
        for (topic, event_type, outcome), count in report.outcomes.items():
            self.events.labels(
                topic=topic,
                type=UNDECODABLE_TYPE if event_type == "?" else event_type,
                outcome=OUTCOME_LABELS.get(str(outcome), str(outcome)),
            ).inc(count)

    def record_drain(self, rows: int) -> None:
        """One relay transaction published ``rows`` outbox rows."""
        self.outbox_drains.inc()
        self.outbox_published.inc(rows)

    def record_committed(
        self, timestamps_ms: Iterable[int | None], now: float | None = None
    ) -> None:
        """Publish-to-commit latency of every record of a committed batch."""
        for age in _ages_s(timestamps_ms, now):
            self.event_latency.observe(age)

    def record_fetched(self, timestamps_ms: Iterable[int | None], now: float | None = None) -> None:
        """How long the oldest record of a fetched batch waited before the worker received it.

        Once per batch, not per record: the handler that receives batches is on the hot path.
        """
        oldest = max(_ages_s(timestamps_ms, now), default=None)
        if oldest is not None:
            self.fetch_delay.observe(oldest)

    def record_retry(self) -> None:
        self.database_retries.inc()

    def set_lag(self, lags: Sequence[tuple[str, int, int]]) -> None:
        """Replace the lag of every partition: ``(topic, partition, lag)``; revoked ones vanish."""
        self.consumer_lag.clear()
        for topic, partition, lag in lags:
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: Any) -> float:
        """A sample's current value (0 if absent); for tests and the demo."""
        found = self.registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})
        return float(found or 0.0)
