"""The polling baseline: the same mail, picked up by a delta query on each mailbox every 60 s.

Polling is the service's own backstop, :func:`subscriptions.reconcile.reconcile` (delta on the
inbox and Sent Items, then the same linking), run here in this process against the same database
and mailboxes, with the service stopped and the emulator's notifications switched off.

To take seconds instead of minutes, time is compressed ``COMPRESSION`` times: the workload plays that
much faster and each mailbox is polled every ``60 / COMPRESSION`` s, the mailboxes' polls staggered
evenly over the interval. The Graph call count hardly depends on the compression, because each poll
still finds the messages of 60 s of real workload. Latency is put back into real time with the
cadence: a message waits for its mailbox's next due poll (that wait times ``COMPRESSION``), then for
the work of the poll that linked it (Graph calls at the same 50 ms, linking), as measured. A poll
that starts late because every poller is busy would not be late in real time, with
``COMPRESSION`` times more time for the same work, so lateness does not count as wait; it is
reported as ``polling_start_lag_max_s`` (real seconds) to show how close the run came to that.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app import create_app
from app.core.db import close_thread_dbs
from app.records.services import Services
from bench.measure import latency_figures
from bench.stack import Mailbox
from bench.workload import Delivered, Workload, deliver, epoch, graph_calls
from emulator import Emulator
from subscriptions.reconcile import FOLDERS, reconcile

POLL_INTERVAL = 60.0
COMPRESSION = 5.0
POLLERS = 8  # polls of different mailboxes run side by side; one mailbox is never polled twice at once
TAG = "poll"


@dataclass(frozen=True)
class Cadence:
    """Mailbox ``i`` of ``count`` is due at ``start + interval * (i / count + n)`` for n = 0, 1, 2..."""

    start: float
    interval: float
    count: int

    def first_due(self, mailbox: int) -> float:
        return self.start + self.interval * mailbox / self.count

    def next_due(self, mailbox: int, at: float) -> float:
        """The first due time of ``mailbox`` at or after ``at``."""
        first = self.first_due(mailbox)
        return first + self.interval * max(0, math.ceil((at - first) / self.interval))


@dataclass(frozen=True)
class Poll:
    mailbox: int
    due: float
    started: float
    finished: float


def _poll(services: Services, mailbox: Mailbox, due: float, polls: list[Poll]) -> None:
    started = time.time()
    try:
        reconcile(services, mailbox.connection_id)
    finally:
        polls.append(Poll(mailbox.index, due, started, time.time()))
        close_thread_dbs()


def catch_up(services: Services, mailboxes: list[Mailbox]) -> None:
    """Bring every mailbox's delta token up to now, so the measured polls see only the new mail."""
    with ThreadPoolExecutor(POLLERS) as pool:
        list(pool.map(lambda m: _poll(services, m, time.time(), []), mailboxes))


def poll_while_delivering(emulator: Emulator, services: Services, mailboxes: list[Mailbox],
                          workload: Workload) -> tuple[dict[str, Delivered], list[Poll], Cadence]:
    """Deliver the workload (compressed) while each mailbox is polled on its cadence.

    Runs until every mailbox has had a poll that started after its last message arrived.
    """
    cadence = Cadence(time.time(), POLL_INTERVAL / COMPRESSION, len(mailboxes))
    delivered: dict[str, Delivered] = {}
    delivery = threading.Thread(target=lambda: delivered.update(
        deliver(emulator, workload, mailboxes, TAG, time_scale=COMPRESSION)), name="bench-delivery")
    due = {m.index: cadence.first_due(m.index) for m in mailboxes}
    running: dict[int, Future] = {}
    polls: list[Poll] = []
    delivery.start()
    with ThreadPoolExecutor(POLLERS, thread_name_prefix="bench-poller") as pool:
        while delivery.is_alive() or running or not _all_caught_up(delivered, polls):
            now = time.time()
            running = {index: future for index, future in running.items() if not future.done()}
            for mailbox in mailboxes:
                if mailbox.index not in running and now >= due[mailbox.index]:
                    running[mailbox.index] = pool.submit(_poll, services, mailbox, due[mailbox.index], polls)
                    due[mailbox.index] = cadence.next_due(mailbox.index, now + 1e-6)
            time.sleep(0.005)
    delivery.join()
    return delivered, polls, cadence


def _all_caught_up(delivered: dict[str, Delivered], polls: list[Poll]) -> bool:
    last_delivery: dict[int, float] = {}
    for item in delivered.values():
        last_delivery[item.mailbox] = max(last_delivery.get(item.mailbox, 0.0), item.at)
    last_poll: dict[int, float] = {}
    for poll in polls:
        last_poll[poll.mailbox] = max(last_poll.get(poll.mailbox, 0.0), poll.started)
    return all(last_poll.get(mailbox, 0.0) > at for mailbox, at in last_delivery.items())


def real_time_latency(item: Delivered, linked_at: float, polls: list[Poll], cadence: Cadence) -> float:
    """Wait for the next due poll (scaled to real time) plus the linking poll's own work so far."""
    poll = next((p for p in polls if p.mailbox == item.mailbox and p.started <= linked_at <= p.finished + 0.01),
                None)
    work = linked_at - max(poll.started, item.at) if poll else 0.0
    return (cadence.next_due(item.mailbox, item.at) - item.at) * COMPRESSION + work


def linked_times(services: Services) -> dict[str, float]:
    rows = services.db().query("SELECT internet_message_id, created_at FROM messages WHERE internet_message_id LIKE ?",
                               [f"<{TAG}.%"])
    return {row["internet_message_id"]: epoch(row["created_at"]) for row in rows}


def run(emulator: Emulator, config: dict[str, Any], mailboxes: list[Mailbox], workload: Workload,
        latency_ms: float) -> dict[str, Any]:
    """Poll the workload's mail into the records; figures prefixed ``polling_``."""
    services: Services = create_app(config).extensions["services"]
    emulator.subscriptions.delivery.config.drop_rate = 1.0  # the service is stopped: no notifications
    emulator.set_graph_latency(None)
    catch_up(services, mailboxes)
    emulator.set_graph_latency(latency_ms)
    emulator.clear_requests()
    delivered, polls, cadence = poll_while_delivering(emulator, services, mailboxes, workload)
    calls = graph_calls(emulator.requests())
    linked = linked_times(services)
    latencies = [real_time_latency(delivered[m], at, polls, cadence) for m, at in linked.items() if m in delivered]
    figures = {
        "polling_interval_s": POLL_INTERVAL, "polling_compression": COMPRESSION, "polling_polls": len(polls),
        "polling_messages": len(delivered), "polling_linked": len(latencies),
        "polling_graph_calls": calls["calls"],
        "polling_calls_per_linked": calls["calls"] / len(latencies) if latencies else math.nan,
        "polling_idle_calls_per_hour": len(mailboxes) * len(FOLDERS) * 3600 / POLL_INTERVAL,
        "polling_start_lag_max_s": max((p.started - p.due for p in polls), default=0.0) * COMPRESSION,
        "polling_work_max_s": max((p.finished - p.started for p in polls), default=0.0),
    }
    figures.update(latency_figures("polling", latencies))
    return figures
