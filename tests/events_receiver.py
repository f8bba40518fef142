"""The records platform's event receiver, as a test runs it: a small threaded HTTP server on loopback
that checks every delivery's Standard Webhooks signature with the ``standardwebhooks`` library.

``status`` is what it answers (a test sets 500 to play an outage); while ``hold`` is clear a delivery
waits (up to a minute) before it is answered, so a test can stop the service between an event's POST
and its answer. ``unverified`` lists every delivery whose signature failed: a test asserts it is empty.
"""

from __future__ import annotations

import base64
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from standardwebhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Delivery(NamedTuple):
    webhook_id: str
    headers: dict[str, str]
    event: dict[str, Any]
    status: int


class EventReceiver:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or new_secret()
        self.status = 204
        self.hold = threading.Event()
        self.hold.set()
        self.arrivals = 0  # POSTs received, answered or not
        self.deliveries: list[Delivery] = []
        self.unverified: list[str] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.arrivals += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name: value for name, value in self.headers.items()}
                try:
                    event = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError as e:
                    receiver.unverified.append(f"{e}: {headers}")
                    event = None
                receiver.hold.wait(60)
                status = receiver.status
                with receiver.arrived:
                    if event is not None:
                        receiver.deliveries.append(Delivery(headers["webhook-id"], headers, event, status))
                    receiver.arrived.notify_all()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the service went away while its delivery was held
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/events"
        self._thread = threading.Thread(target=self._server.serve_forever, name="event-receiver", daemon=True)

    def start(self) -> EventReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def taken(self) -> list[Delivery]:
        """The deliveries answered with a 2xx."""
        return [d for d in self.deliveries if 200 <= d.status < 300]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The events taken (each once, by webhook-id), in the order they first arrived."""
        seen: dict[str, dict[str, Any]] = {}
        for delivery in self.taken():
            seen.setdefault(delivery.webhook_id, delivery.event)
        return [event for event in seen.values() if kind is None or event["type"] == kind]
