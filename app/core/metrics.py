"""Prometheus metrics: counters the code increments, plus gauges read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlite_utils import Database

from app.core.db import thread_db
from app.core.queue import JobQueue

NOTIFICATIONS_RECEIVED = Counter("outlook_notifications_received", "Notification items received from Graph.")
NOTIFICATIONS_ACCEPTED = Counter("outlook_notifications_accepted", "Notification items accepted and queued.")
NOTIFICATIONS_REJECTED = Counter("outlook_notifications_rejected", "Notification items rejected, by reason.",
                                 ["reason"])
GRAPH_REQUESTS = Counter("outlook_graph_requests", "Graph requests by operation and HTTP status (0 = network).",
                         ["operation", "status"])
GRAPH_THROTTLES = Counter("outlook_graph_throttled", "Graph answers of 429/503/504, by operation.", ["operation"])
JOB_OUTCOMES = Counter("outlook_jobs", "Jobs finished by the workers, by kind and outcome.", ["kind", "outcome"])
RENEWALS = Counter("outlook_subscription_renewals", "Subscription renewals by outcome.", ["outcome"])
REQUESTS_BUSY = Counter("outlook_requests_busy", "Requests answered 503 busy: the request threads not reserved "
                        "for Graph's deliveries were all taken.")
CLIENT_CERTIFICATE_EXPIRY = Gauge("outlook_client_certificate_expiry_timestamp_seconds",
                                  "When the app registration's certificate (AZURE_CLIENT_CERTIFICATE_PATH) expires, "
                                  "as a Unix time; 0 when the service authenticates with a secret.")
EVENT_DELIVERIES = Counter("outlook_event_deliveries", "Attempts to deliver an event to EVENTS_URL, by outcome "
                           "(delivered; failed, to be retried; dead, out of retries).", ["outcome"])
NOTIFICATION_TO_LINKED = Histogram(
    "outlook_notification_to_linked_seconds", "From receiving a notification to the message linked.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


def observe_graph(operation: str, status: int) -> None:
    GRAPH_REQUESTS.labels(operation, str(status)).inc()
    if status in (429, 503, 504):
        GRAPH_THROTTLES.labels(operation).inc()


Gauges = Callable[[Database], Iterable[GaugeMetricFamily]]


class DatabaseCollector(Collector):
    """Queue depth and age, connections and outbox by status, read when Prometheus scrapes, plus the
    ``extra`` gauges of layers above (which read tables of their own)."""

    def __init__(self, database: str, extra: Sequence[Gauges] = ()) -> None:
        self.database = database
        self.extra = tuple(extra)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        db = thread_db(self.database)
        stats = JobQueue(db).stats()
        depth = GaugeMetricFamily("outlook_queue_jobs", "Jobs in the queue by state.", labels=["state"])
        for state, count in stats.by_state.items():
            depth.add_metric([state], count)
        yield depth
        yield GaugeMetricFamily("outlook_queue_oldest_pending_seconds", "Age of the oldest ready job.",
                                value=stats.oldest_pending_age)
        for table, name in (("connections", "outlook_connections"), ("outbox", "outlook_outbox")):
            family = GaugeMetricFamily(name, f"Rows of {table} by status.", labels=["status"])
            for row in db.query(f"SELECT status, count(*) AS n FROM {table} GROUP BY status"):
                family.add_metric([row["status"]], row["n"])
            yield family
        for gauges in self.extra:
            yield from gauges(db)


_registries: dict[str, CollectorRegistry] = {}


def registry_for(database: str, extra: Sequence[Gauges] = ()) -> CollectorRegistry:
    """The process's counters plus the database gauges of ``database`` (one registry per database, made
    on first use with that call's ``extra`` gauges)."""
    if database not in _registries:
        registry = CollectorRegistry()
        registry.register(_ProcessCounters())
        registry.register(DatabaseCollector(database, extra))
        _registries[database] = registry
    return _registries[database]


class _ProcessCounters(Collector):
    """Re-exposes the default registry (this process's counters and histograms)."""

    def collect(self) -> Iterator:
        yield from REGISTRY.collect()
