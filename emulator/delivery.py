"""Posting change and lifecycle notifications to subscribers' endpoints, the way Graph does.

Notifications for one URL gather for ``batch_window`` seconds (or until ``batch_size``) and go out
together as ``{"value": [...]}``. The first POST has ``timeout`` (3 s); a non-2xx answer or a timeout
is retried with exponential backoff and ``retry_timeout`` (10 s) until ``retry_window`` is used up.
The backoff schedule is in Graph seconds (first retry after a minute, at most 4 h in all) and
``time_scale`` compresses it to real seconds, so tests see several retries in well under a second.
Each URL has at most ``per_url_concurrency`` POSTs in flight on a shared pool of worker threads, so a
slow endpoint cannot starve the others. Duplicates (replays), reordering, delays and drops are knobs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable

import requests

logger = logging.getLogger(__name__)


@dataclass
class DeliveryConfig:
    """Delivery knobs; read on every use, so they may change on a running emulator (except ``workers``):
    :meth:`Delivery.configure` checks a change before making it.

    Timeouts and waits are real seconds; ``first_retry``, ``max_backoff`` and ``retry_window`` are
    Graph seconds, multiplied by ``time_scale``. ``created_then_updated`` adds the ``updated``
    that follows ``created`` for new mail; ``replay_rate`` re-sends a notification ``replay_count``
    more times; ``reorder`` shuffles each POST; ``delay_rate`` holds notifications back ``delay``
    seconds; ``drop_rate`` loses change notifications without a trace. ``held`` keeps every
    notification queued until it is cleared, then they go out as fast as batching and
    ``per_url_concurrency`` allow: the backlog Graph delivers once an endpoint that was unreachable
    (or throttled as slow) takes deliveries again
    (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#throttling).
    """

    timeout: float = 3.0
    retry_timeout: float = 10.0
    first_retry: float = 60.0
    max_backoff: float = 3600.0
    retry_window: float = 4 * 3600.0
    time_scale: float = 0.001
    batch_size: int = 20
    batch_window: float = 0.02
    workers: int = 8
    per_url_concurrency: int = 4
    created_then_updated: bool = True
    replay_rate: float = 0.0
    replay_count: int = 1
    replay_delay: float = 0.05
    reorder: bool = False
    delay_rate: float = 0.0
    delay: float = 0.2
    drop_rate: float = 0.0
    verify_tls: bool | str = True
    sweep_interval: float = 0.25
    held: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{f.name} must not be negative, not {value}")
        for name in ("replay_rate", "delay_rate", "drop_rate"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} is a probability (0 to 1), not {getattr(self, name)}")
        for name in ("batch_size", "workers", "per_url_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST: where, with what, what came back (``status`` None on timeout or connection error)."""

    url: str
    value: list[dict]
    attempt: int
    status: int | None
    latency: float
    error: str | None = None


@dataclass
class _Batch:
    url: str
    items: list[tuple[dict, str | None]]
    attempt: int = 0
    first_sent: float = 0.0


@dataclass
class _Queue:
    pending: list[tuple[dict, str | None]] = field(default_factory=list)
    since: float = 0.0
    retries: deque = field(default_factory=deque)
    in_flight: int = 0


class Delivery:
    """Background delivery. ``is_live(subscription_id)`` is asked before each POST; ``tick`` runs periodically."""

    def __init__(self, config: DeliveryConfig | None = None, *, is_live: Callable[[str], bool] = lambda _: True,
                 tick: Callable[[], None] | None = None) -> None:
        self.config = config or DeliveryConfig()
        self._is_live = is_live
        self._tick = tick
        self._random = random.Random()
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._scheduled: list[tuple[float, int, object]] = []
        self._order = itertools.count()
        self._work: queue.Queue = queue.Queue()
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._attempts: deque[DeliveryAttempt] = deque(maxlen=100_000)
        #: Counts of notifications dropped on purpose (``drop_rate``) and abandoned after the retry window.
        self.dropped = 0
        self.abandoned = 0

    def start(self) -> None:
        if self._threads:
            return
        self._stopping = False
        self._threads = [threading.Thread(target=self._dispatch, name="delivery-dispatch", daemon=True)]
        self._threads += [threading.Thread(target=self._post_loop, name=f"delivery-{i}", daemon=True)
                          for i in range(self.config.workers)]
        for thread in self._threads:
            thread.start()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change :class:`DeliveryConfig` fields, all checked before any applies; returns every field.

        ``workers`` cannot change while the threads run.
        """
        if self._threads and knobs.get("workers", self.config.workers) != self.config.workers:
            raise ValueError("workers cannot change while delivery runs")
        unknown = set(knobs) - {f.name for f in fields(DeliveryConfig)}
        if unknown:
            raise ValueError(f"unknown delivery setting(s): {', '.join(sorted(unknown))}")
        with self._cond:
            self.config = replace(self.config, **knobs)
            self._cond.notify_all()  # the dispatcher applies it now, not at its next sweep
        return asdict(self.config)

    def stop(self) -> None:
        """Stop the threads; POSTs in progress finish first (each bounded by its timeout)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for _ in self._threads[1:]:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def enqueue(self, url: str, item: dict, subscription_id: str | None = None) -> None:
        """Queue one notification; ``subscription_id`` None marks a lifecycle event (sent even after removal)."""
        config = self.config
        if subscription_id is not None and self._random.random() < config.drop_rate:
            self.dropped += 1
            return
        now = time.monotonic()
        with self._cond:
            if self._random.random() < config.delay_rate:
                self._schedule(now + config.delay, (url, item, subscription_id))
            else:
                self._add(url, item, subscription_id, now)
            if self._random.random() < config.replay_rate:
                for n in range(config.replay_count):
                    self._schedule(now + config.replay_delay * (n + 1), (url, item, subscription_id))
            self._cond.notify_all()

    def attempts(self, url: str | None = None) -> list[DeliveryAttempt]:
        with self._cond:
            return [a for a in self._attempts if url in (None, a.url)]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued, scheduled or being posted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._scheduled or self._busy or any(q.pending or q.retries for q in self._queues.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def _add(self, url: str, item: dict, subscription_id: str | None, now: float) -> None:
        target = self._queues.setdefault(url, _Queue())
        if not target.pending:
            target.since = now
        target.pending.append((item, subscription_id))

    def _schedule(self, due: float, entry: object) -> None:
        heapq.heappush(self._scheduled, (due, next(self._order), entry))

    def _dispatch(self) -> None:
        next_tick = 0.0
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                self._release_scheduled(now)
                wait = self._release_batches(now)
                self._cond.wait(wait)
            if self._tick and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.config.sweep_interval
                self._tick()

    def _release_scheduled(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            _, _, entry = heapq.heappop(self._scheduled)
            if isinstance(entry, _Batch):
                self._queues[entry.url].retries.append(entry)
            else:
                self._add(*entry, now)

    def _release_batches(self, now: float) -> float:
        """Hand ready batches to the workers; returns how long the dispatcher may sleep."""
        config = self.config
        wait = config.sweep_interval
        if config.held:
            return wait
        for url, target in self._queues.items():
            while target.in_flight < config.per_url_concurrency:
                if target.retries:
                    batch = target.retries.popleft()
                elif target.pending and (len(target.pending) >= config.batch_size
                                         or now - target.since >= config.batch_window):
                    batch = _Batch(url, target.pending[:config.batch_size])
                    del target.pending[:config.batch_size]
                    target.since = now
                else:
                    break
                target.in_flight += 1
                self._busy += 1
                self._work.put(batch)
            if target.pending:
                wait = min(wait, max(0.001, target.since + config.batch_window - now))
        if self._scheduled:
            wait = min(wait, max(0.001, self._scheduled[0][0] - now))
        return wait

    def _post_loop(self) -> None:
        with requests.Session() as session:
            while True:
                batch = self._work.get()
                if batch is None:
                    return
                try:
                    self._post(session, batch)
                except Exception:
                    logger.exception("Delivery: posting to %s failed unexpectedly", batch.url)
                finally:
                    with self._cond:
                        self._queues[batch.url].in_flight -= 1
                        self._busy -= 1
                        self._cond.notify_all()

    def _post(self, session: requests.Session, batch: _Batch) -> None:
        config = self.config
        batch.items = [(item, sid) for item, sid in batch.items if sid is None or self._is_live(sid)]
        if not batch.items:
            return
        batch.attempt += 1
        started = time.monotonic()
        if batch.attempt == 1:
            batch.first_sent = started
            if config.reorder:
                self._random.shuffle(batch.items)
        value = [item for item, _ in batch.items]
        status, error = None, None
        try:
            rv = session.post(batch.url, json={"value": value},
                              timeout=config.timeout if batch.attempt == 1 else config.retry_timeout,
                              verify=config.verify_tls)
            status = rv.status_code
            rv.close()
        except requests.RequestException as e:
            error = type(e).__name__
        latency = time.monotonic() - started
        with self._cond:
            self._attempts.append(DeliveryAttempt(batch.url, value, batch.attempt, status, latency, error))
        if status is not None and 200 <= status < 300:
            return
        self._retry(batch, started + latency)

    def _retry(self, batch: _Batch, now: float) -> None:
        config = self.config
        backoff = min(config.first_retry * 2 ** (batch.attempt - 1), config.max_backoff) * config.time_scale
        if now + backoff - batch.first_sent > config.retry_window * config.time_scale:
            logger.warning("Delivery: giving up on %d notifications to %s after %d attempts",
                           len(batch.items), batch.url, batch.attempt)
            self.abandoned += len(batch.items)
            return
        with self._cond:
            self._schedule(now + backoff, batch)
            self._cond.notify_all()
