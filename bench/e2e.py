"""End to end: 5,000 notifications into 50 connected mailboxes at 100 per second, in bursts.

The emulator adds 50 ms to every Graph call. Each reply goes emulator mailbox → change
notification → ``python -m app`` (receiver, queue, workers, ``$batch`` fetch, linking) → record.
Latency runs from the moment the message entered the mailbox to the record's
``messages.created_at``. Graph calls are read from the emulator's request log. The emulator is
told to send one ``created`` per new message (Graph often adds an ``updated``, which the receiver
collapses into the same job), so 5,000 messages are 5,000 notifications.

Then a backlog of 2,000 replies arrives at once, to see how fast the service can link (the steady
run only shows the offered rate), and the service's peak resident memory (``VmHWM``) is read before
it stops. The polling baseline (:mod:`bench.polling`) follows on the same mailboxes.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import polling
from bench.measure import cpu_seconds, free_port, latency_figures, percentile
from bench.stack import (
    Mailbox,
    ServiceProcess,
    add_users,
    connect,
    connection_ids,
    prepare_record,
    service_config,
    start_emulator,
    wait_until_settled,
)
from bench.workload import Workload, deliver, deliver_backlog, epoch, graph_calls
from emulator import Emulator

MAILBOXES = 50
GRAPH_LATENCY_MS = 50
DRAIN_TIMEOUT = 120.0  # seconds allowed after the last burst for the backlog to be linked
TAG = "push"
# Capacity: one burst far above the steady rate (40 replies in each mailbox at once), linked as fast
# as the service can; the steady run's linked/s can only show the offered 100/s.
BACKLOG = Workload(messages=2_000, rate=1e9, burst_mailboxes=MAILBOXES, per_mailbox=40)
# Coalescing: 100 related replies in one mailbox at once, delivered in 4 POSTs of 25; 5 full $batches
# is the least Graph allows.
BURST = Workload(messages=100, rate=1e9, burst_mailboxes=1, per_mailbox=100)
BURST_POST_SIZE = 25
# Attachments: the same replies with and without a 40 KB PDF each, 20 to a mailbox (one full $batch):
# reading the files of 20 linked replies is one more $batch, so 2 calls per 20 against 1.
ATTACHED = Workload(messages=200, rate=200.0, burst_mailboxes=10, per_mailbox=20)
ATTACHMENT = b"%PDF-1.4\n" + bytes(range(256)) * 160


@dataclass
class Stack:
    emulator: Emulator
    service: ServiceProcess
    mailboxes: list[Mailbox]


def set_up(workdir: Path, log_path: Path) -> Stack:
    """The emulator, one tenant of 50 users, the service, and every user connected from a record."""
    emulator = start_emulator()
    emulator.subscriptions.delivery.config.created_then_updated = False
    port = free_port()
    client_id, client_secret = emulator.register_app(redirect_uris=[f"http://127.0.0.1:{port}/auth/callback"])
    tenant_id = emulator.add_tenant("Bench Corp")
    mailboxes = add_users(emulator, tenant_id, MAILBOXES, "bench.example")
    service = ServiceProcess(service_config(emulator, workdir, client_id, client_secret, port), workdir, log_path)
    service.start()
    for mailbox in mailboxes:
        prepare_record(service, emulator, mailbox)
        connect(service, emulator, mailbox)
    wait_until_settled(service, MAILBOXES)
    ids = connection_ids(service)
    for mailbox in mailboxes:
        mailbox.connection_id = ids[mailbox.user_id]
    return Stack(emulator, service, mailboxes)


def linked_times(service: ServiceProcess, tag: str) -> dict[str, float]:
    """Message-ID → when the service stored it on the record (epoch seconds)."""
    with service.db() as db:
        rows = db.execute("SELECT internet_message_id, created_at FROM messages WHERE internet_message_id LIKE ?",
                          [f"<{tag}.%"]).fetchall()
    return {row[0]: epoch(row[1]) for row in rows}


def kept_times(service: ServiceProcess, tag: str) -> dict[str, float]:
    """Message-ID → when the service had kept the bytes of its attachments (epoch seconds)."""
    with service.db() as db:
        rows = db.execute("SELECT m.internet_message_id, max(a.created_at) FROM messages m"
                          " JOIN attachments a ON a.message_id = m.id JOIN attachment_content c ON c.attachment_id = a.id"
                          " WHERE m.internet_message_id LIKE ? GROUP BY m.internet_message_id", [f"<{tag}.%"]).fetchall()
    return {row[0]: epoch(row[1]) for row in rows}


def wait_linked(read: Any, expected: int, timeout: float) -> dict[str, float]:
    """Poll ``read()`` until it holds ``expected`` messages or ``timeout`` passes; return what it holds."""
    deadline = time.monotonic() + timeout
    linked = read()
    while len(linked) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        linked = read()
    return linked


def histogram_p95(metrics_text: str, name: str) -> float:
    """The upper bound of the Prometheus bucket holding the 95th percentile (inf when beyond the last)."""
    buckets = [(float(le), float(count)) for le, count in
               re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\S+)$', metrics_text, re.MULTILINE)]
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, count in buckets if total and count >= 0.95 * total), float("nan"))


def service_outcomes(service: ServiceProcess) -> dict[str, int]:
    with service.db() as db:
        retried = db.execute("SELECT count(*) FROM jobs WHERE kind = 'message' AND attempts > 1").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM jobs WHERE kind = 'message' AND state = 'dead'").fetchone()[0]
    return {"e2e_jobs_retried": retried, "e2e_jobs_dead": dead}


class Meter:
    """What the emulator and the two processes did over a stretch of time.

    CPU shares are of one core (a Python process cannot use much more than one); 429s are what the
    emulator answered, by its reason (``concurrency``: over 4 requests in flight for one mailbox;
    ``penalty``: called again before the Retry-After had passed).
    """

    def __init__(self, stack: Stack) -> None:
        self.emulator, self.pid = stack.emulator, stack.service.process.pid
        self.emulator.clear_requests()
        self.restart()
        self.throttled = dict(self.emulator.faults.throttled)
        self.posts = len(self.emulator.subscriptions.delivery.attempts())

    def restart(self) -> None:
        """Count time and CPU from now on (Graph calls, notifications and 429s still from the start)."""
        self.started = time.monotonic()
        self.cpu = (cpu_seconds(self.pid), cpu_seconds())

    def figures(self, prefix: str) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        throttled = {reason: n - self.throttled.get(reason, 0) for reason, n in self.emulator.faults.throttled.items()}
        posts = [p for p in self.emulator.subscriptions.delivery.attempts()[self.posts:] if p.attempt == 1]
        calls = graph_calls(self.emulator.requests())
        return {
            f"{prefix}_service_cpu": (cpu_seconds(self.pid) - self.cpu[0]) / elapsed,
            f"{prefix}_emulator_cpu": (cpu_seconds() - self.cpu[1]) / elapsed,
            f"{prefix}_throttled_429": sum(throttled.values()),
            f"{prefix}_throttled_reasons": {reason: n for reason, n in throttled.items() if n},
            f"{prefix}_notifications": sum(len(p.value) for p in posts),
            f"{prefix}_delivery_posts": len(posts),
            f"{prefix}_graph_calls": calls["calls"], f"{prefix}_batch_calls": calls["batches"],
            f"{prefix}_batch_subrequests": calls["sub_requests"],
            f"{prefix}_other_graph_calls": calls["delta"] + calls["other"], f"{prefix}_token_calls": calls["token"],
        }


def play(stack: Stack, workload: Workload, tag: str, prefix: str, *, backlog: bool = False,
         attachment: bytes | None = None) -> dict[str, Any]:
    """Deliver ``workload`` (as a backlog there at once: :func:`bench.workload.deliver_backlog`; each
    reply with ``attachment``) and wait until the service has linked it (and kept its attachment);
    the figures of that stretch."""
    meter = Meter(stack)
    if backlog:
        delivered = deliver_backlog(stack.emulator, workload, stack.mailboxes, tag)
        meter.restart()  # the clock starts when the backlog is released
    else:
        delivered = deliver(stack.emulator, workload, stack.mailboxes, tag, attachment=attachment)
    done = kept_times if attachment else linked_times
    linked = wait_linked(lambda: done(stack.service, tag), len(delivered), DRAIN_TIMEOUT)
    figures = meter.figures(prefix)
    first = min(d.at for d in delivered.values())
    elapsed = max(linked.values(), default=first) - first
    figures.update({
        f"{prefix}_messages": len(delivered), f"{prefix}_linked": len(linked),
        f"{prefix}_linked_per_s": len(linked) / elapsed if elapsed > 0 else float("nan"),
        f"{prefix}_calls_per_linked": figures[f"{prefix}_graph_calls"] / len(linked) if linked else float("nan"),
    })
    figures.update(latency_figures(prefix, [linked[m] - delivered[m].at for m in linked]))
    if backlog:
        figures.update(backlog_timeline(stack, prefix, meter, first))  # a backlog's messages count from its release
    return figures


def backlog_timeline(stack: Stack, prefix: str, meter: Meter, released: float) -> dict[str, float]:
    """Where a backlog's time goes: how long Graph took to deliver its notifications (the first to the
    last message job queued, from the release), each delivery POST's acknowledgement, and how long a
    job waited from queued to done (Graph's 4 requests per mailbox make a mailbox's $batches of 20 run
    one after another: 40 replies at 50 ms a request take at least 0.5 s)."""
    attempts = stack.emulator.subscriptions.delivery.attempts()[meter.posts:]
    with stack.service.db() as db:
        jobs = db.execute("SELECT created_at, finished_at FROM jobs WHERE kind = 'message' AND created_at >= ?",
                          [released]).fetchall()
    queued = sorted(created for created, _ in jobs)
    return {
        f"{prefix}_delivered_by_s": queued[-1] - released if queued else float("nan"),
        f"{prefix}_ack_p50_ms": percentile(sorted(a.latency for a in attempts), 50) * 1000,
        f"{prefix}_job_wait_p50_s": percentile(sorted(done - created for created, done in jobs if done), 50),
    }


def run_push(stack: Stack, workload: Workload) -> dict[str, Any]:
    """The steady workload, in bursts at 100 notifications per second."""
    figures = play(stack, workload, TAG, "e2e")
    figures.update({
        "e2e_mailboxes": len(stack.mailboxes), "e2e_graph_latency_ms": GRAPH_LATENCY_MS,
        "e2e_offered_per_s": workload.messages / workload.duration,
        "e2e_notifications_per_post": figures["e2e_notifications"] / max(figures["e2e_delivery_posts"], 1),
        "graph_calls_per_linked": figures["e2e_calls_per_linked"],
    })
    metrics = stack.service.call("GET", "/metrics").text
    figures["e2e_metric_p95_bucket_s"] = histogram_p95(metrics, "outlook_notification_to_linked_seconds")
    figures.update(service_outcomes(stack.service))
    return figures


def run_burst(stack: Stack) -> dict[str, Any]:
    """One mailbox's burst of 100 in POSTs of 25: how many Graph calls fetch it (``burst_graph_calls``)."""
    delivery = stack.emulator.subscriptions.delivery.config
    size, delivery.batch_size = delivery.batch_size, BURST_POST_SIZE
    try:
        figures = play(stack, BURST, "burst", "burst")
    finally:
        delivery.batch_size = size
    figures["burst_ideal_graph_calls"] = BURST.messages // 20
    return figures


def run_attached(stack: Stack) -> dict[str, Any]:
    """Graph calls per linked reply with a PDF each, against the same replies without (``attached_*``, ``plain_*``)."""
    figures = {**play(stack, ATTACHED, "plain", "plain"), **play(stack, ATTACHED, "attached", "attached",
                                                                  attachment=ATTACHMENT)}
    figures["attached_calls_ratio"] = figures["attached_calls_per_linked"] / figures["plain_calls_per_linked"]
    return figures


def run(results_dir: Path, workload: Workload | None = None) -> dict[str, Any]:
    """Set up, run the push workload, then the polling baseline on the same mailboxes."""
    workload = workload or Workload()
    log_path = results_dir / "e2e-service.log"
    log_path.write_text("")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        stack = set_up(Path(tmp), log_path)
        try:
            stack.emulator.set_graph_latency(GRAPH_LATENCY_MS)
            figures = run_push(stack, workload)
            figures.update(play(stack, BACKLOG, "backlog", "backlog", backlog=True))
            figures.update(run_burst(stack))
            figures.update(run_attached(stack))
            figures["peak_rss_mb"] = stack.service.peak_rss_mb()
            stack.service.stop()
            figures.update(polling.run(stack.emulator, stack.service.config, stack.mailboxes, workload,
                                       GRAPH_LATENCY_MS))
        finally:
            stack.service.stop()
            stack.emulator.stop()
    figures["polling_graph_calls_ratio"] = figures["polling_graph_calls"] / max(figures["e2e_graph_calls"], 1)
    figures["polling_latency_ratio"] = figures["polling_p95_s"] / figures["e2e_p95_s"]
    return figures
