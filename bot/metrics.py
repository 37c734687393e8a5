"""Prometheus metrics of one process (served at /metrics): updates, handling and end-to-end times, the outbox."""

from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client.core import CounterMetricFamily
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class DatabaseCounts:
    """Statements and transactions this process sent, read at scrape time."""

    def collect(self):
        from storage.db import STATS

        yield CounterMetricFamily("cccd_db_statements", "SQL statements sent by this process", value=STATS["statements"])
        yield CounterMetricFamily("cccd_db_transactions", "Database transactions begun by this process", value=STATS["transactions"])


class Metrics:
    """The process's metrics, in their own registry (several applications can live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter("cccd_updates", "Deliveries received, by channel and outcome", ["channel", "outcome"], registry=r)
        self.handling = Histogram(
            "cccd_handling_seconds", "Time to handle a delivery (one transaction)", ["channel"], buckets=BUCKETS, registry=r
        )
        self.end_to_end = Histogram(
            "cccd_end_to_end_seconds", "From a reply committed to the platform accepting it", ["channel"], buckets=BUCKETS, registry=r
        )
        self.deliveries = Counter("cccd_deliveries", "Platform calls by channel and result", ["channel", "status"], registry=r)
        self.faq = Counter("cccd_faq_decisions", "How questions were handled", ["outcome"], registry=r)
        self.outbox_depth = Gauge("cccd_outbox_pending", "Calls waiting in the outbox", registry=r)
        self.sender_lag = Gauge("cccd_sender_lag_seconds", "Age of the oldest pending call", registry=r)
        self.sender_holding = Gauge("cccd_sender_lease_held", "1 when this process holds the sender lease", registry=r)
        r.register(DatabaseCounts())

    def watch(self, pipeline, sender, service=None) -> None:
        """Feed the counters from the pipeline's and the sender's hooks."""

        def handled(channel: str, outcome: str, seconds: float) -> None:
            self.updates.labels(channel, outcome).inc()
            if outcome == "handled":
                self.handling.labels(channel).observe(seconds)

        def delivered(channel: str, outcome: str, created_at: datetime) -> None:
            self.deliveries.labels(channel, outcome).inc()
            if outcome == "sent":
                created = created_at if created_at.tzinfo else created_at.replace(tzinfo=timezone.utc)
                self.end_to_end.labels(channel).observe(max((datetime.now(timezone.utc) - created).total_seconds(), 0.0))

        pipeline.on_handled = handled
        sender.on_result = delivered
        if service is not None:
            service.on_query = lambda outcome: self.faq.labels(outcome).inc()
        self._sender = sender

    def outbox(self, pending: int, lag: float) -> None:
        self.outbox_depth.set(pending)
        self.sender_lag.set(lag)

    def render(self) -> tuple[bytes, str]:
        sender = getattr(self, "_sender", None)
        if sender is not None:
            self.sender_holding.set(1 if sender.holding else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
