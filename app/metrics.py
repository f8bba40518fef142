"""Prometheus metrics of the service (exposed at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS_RECEIVED = Counter("outlook_notifications_received", "Notification items received from Graph.")
NOTIFICATIONS_ACCEPTED = Counter("outlook_notifications_accepted", "Notification items accepted and queued.")
NOTIFICATIONS_REJECTED = Counter("outlook_notifications_rejected", "Notification items rejected, by reason.",
                                 ["reason"])
GRAPH_REQUESTS = Counter("outlook_graph_requests", "Graph requests by operation and HTTP status (0 = network).",
                         ["operation", "status"])
NOTIFICATION_TO_LINKED = Histogram(
    "outlook_notification_to_linked_seconds", "From receiving a notification to the message linked.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
