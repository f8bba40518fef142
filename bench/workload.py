"""The mail that arrives during the end-to-end runs: bursts of replies that link to records.

One burst every ``interval`` seconds puts ``per_mailbox`` replies into each of ``burst_mailboxes``
mailboxes (the next group of mailboxes each time), so the overall rate is ``rate`` messages per
second and every mailbox sees a burst of its own every few seconds. Each reply names the record's
uploaded email in In-Reply-To and References, so it links by the second threading rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bench.stack import VENDOR, Mailbox
from emulator import Emulator


@dataclass(frozen=True)
class Workload:
    messages: int = 5_000
    rate: float = 100.0  # messages (and so notifications) per second, overall
    burst_mailboxes: int = 10
    per_mailbox: int = 10

    @property
    def burst_size(self) -> int:
        return self.burst_mailboxes * self.per_mailbox

    @property
    def bursts(self) -> int:
        return self.messages // self.burst_size

    @property
    def interval(self) -> float:
        return self.burst_size / self.rate

    @property
    def duration(self) -> float:
        return self.bursts * self.interval

    def burst(self, number: int, mailboxes: list[Mailbox], tag: str) -> list[tuple[Mailbox, str]]:
        """The (mailbox, Message-ID) pairs of burst ``number``."""
        groups = max(1, len(mailboxes) // self.burst_mailboxes)
        first = (number % groups) * self.burst_mailboxes
        return [(mailbox, f"<{tag}.{number}.{mailbox.index}.{n}@vendor.example>")
                for mailbox in mailboxes[first:first + self.burst_mailboxes] for n in range(self.per_mailbox)]


@dataclass(frozen=True)
class Delivered:
    mailbox: int
    at: float  # epoch seconds, when the message entered the mailbox


def deliver(emulator: Emulator, workload: Workload, mailboxes: list[Mailbox], tag: str, *,
            time_scale: float = 1.0, on_burst: Callable[[int], None] | None = None,
            attachment: bytes | None = None) -> dict[str, Delivered]:
    """Play the workload into the emulator's mailboxes, ``time_scale`` times faster than real time;
    with ``attachment``, each reply carries it as a PDF."""
    attachments = [{"name": "form.pdf", "content_type": "application/pdf", "content": attachment}] if attachment else []
    delivered: dict[str, Delivered] = {}
    start = time.time() + 0.05
    for number in range(workload.bursts):
        pause = start + number * workload.interval / time_scale - time.time()
        if pause > 0:
            time.sleep(pause)
        for mailbox, message_id in workload.burst(number, mailboxes, tag):
            at = time.time()
            emulator.deliver_email(
                mailbox.user_id, subject=f"RE: Onboarding documents {mailbox.index}",
                body=f"Reply {message_id}: one more form attached.", sender=VENDOR, to=[mailbox.email],
                in_reply_to=mailbox.first_message_id, references=[mailbox.first_message_id],
                internet_message_id=message_id, attachments=attachments)
            delivered[message_id] = Delivered(mailbox.index, at)
        if on_burst is not None:
            on_burst(number)
    return delivered


def deliver_backlog(emulator: Emulator, workload: Workload, mailboxes: list[Mailbox], tag: str) -> dict[str, Delivered]:
    """The workload as a backlog that is there at once: its mail enters the mailboxes while Graph's
    notifications are held back, then every notification is released together, and each message
    counts as delivered at that moment. (Putting 2,000 messages into the emulator takes it over a
    second of the two cores the service needs; delivered as it goes, the drain would measure that.)"""
    delivery = emulator.subscriptions.delivery
    delivery.configure(held=True)
    try:
        delivered = deliver(emulator, workload, mailboxes, tag)
    finally:
        released = time.time()
        delivery.configure(held=False)
    return {message_id: Delivered(d.mailbox, released) for message_id, d in delivered.items()}


def epoch(iso_text: str) -> float:
    """The service's stored ISO-8601 UTC time as epoch seconds."""
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


def graph_calls(requests: list[dict]) -> dict[str, int]:
    """Graph calls in an emulator request log: a ``$batch`` is one call; its sub-requests are counted apart."""
    figures = {"calls": 0, "batches": 0, "sub_requests": 0, "delta": 0, "other": 0, "token": 0}
    for request in requests:
        path = request["path"]
        if path.endswith("/oauth2/v2.0/token"):
            figures["token"] += 1
        if not path.startswith("/v1.0/"):
            continue
        figures["calls"] += 1
        if path == "/v1.0/$batch":
            figures["batches"] += 1
            figures["sub_requests"] += len(json.loads(request["body"] or b"{}").get("requests", []))
        elif "/delta" in path:
            figures["delta"] += 1
        else:
            figures["other"] += 1
    return figures
