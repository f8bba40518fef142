"""What one acknowledgement costs, without a server: the receiver's WSGI call against a bare view's.

``bench.ack`` measures the acknowledgement path under waitress, where the cost of a request is
multiplied by GIL handoffs between the I/O thread and the request threads. This one calls each
app directly, on one thread, with the same 10-item batches, and splits the receiver's cost in two:
everything but the database write (the queue's ``enqueue_many`` replaced by a no-op) and the
write. Rounds alternate between the variants and the fastest round of each counts, so a noisy
machine shows the cost of the code rather than of its neighbours.

    python -m bench.ack_cost
"""

from __future__ import annotations

import io
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from app.web.context import services_of
from bench.ack import BATCH, PATH, TENANT, bare_app, seed_subscriptions, service_config, subscriptions
from bench.load import SEQ, NotificationBodies

ROUNDS = 25
REQUESTS_PER_ROUND = 100

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def _environ(body: bytes) -> dict[str, Any]:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body))}


def _round(app: WsgiApp, template: bytes, numbers: itertools.count) -> float:
    """Seconds per request over one round; every request carries message ids never seen before."""
    statuses: list[str] = []
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_ROUND):
        body = template.replace(SEQ, str(next(numbers)).encode())
        for _chunk in app(_environ(body), lambda status, headers, exc_info=None: statuses.append(status)):
            pass
    elapsed = (time.perf_counter() - started) / REQUESTS_PER_ROUND
    if any(not status.startswith("202") for status in statuses):
        raise RuntimeError(f"unexpected answers: {sorted(set(statuses))}")
    return elapsed


def run() -> dict[str, float]:
    """Milliseconds per request for the bare view, the receiver without its write, and with it."""
    from app import create_app

    with tempfile.TemporaryDirectory(prefix="bench-ack-cost-") as tmp:
        receiver = create_app(service_config(str(Path(tmp) / "cost.db"), Fernet.generate_key().decode(), 1))
        seed_subscriptions(receiver)
        queue = services_of(receiver).queue
        template = NotificationBodies(subscriptions(), TENANT, BATCH, prefix="cost").templates()[0]
        numbers = itertools.count()

        def without_write(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            queue.enqueue_many = lambda jobs, **kwargs: None  # instance attribute: shadows the method
            try:
                return list(receiver(environ, start_response))
            finally:
                del queue.enqueue_many

        variants: dict[str, WsgiApp] = {"bare": bare_app(), "receiver_without_write": without_write,
                                        "receiver": receiver}
        best = {name: float("inf") for name in variants}
        for _ in range(ROUNDS):
            for name, app in variants.items():
                best[name] = min(best[name], _round(app, template, numbers))
    figures = {f"cost_{name}_ms": seconds * 1000 for name, seconds in best.items()}
    figures["cost_write_ms"] = figures["cost_receiver_ms"] - figures["cost_receiver_without_write_ms"]
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
