"""Worker threads: claim jobs, run their handler, record the outcome in the queue.

A handler is a plain function of one :class:`~app.core.queue.Job`. It raises
:class:`~handlers.errors.RetryLater` for a transient failure, :class:`~handlers.errors.PermanentError`
when retrying cannot help; any other ``Exception`` is logged and retried like a transient one
(``BaseException`` is never caught). A :class:`BatchHandler` takes several ready jobs of one kind and
one mailbox at once, so the message handler can fetch them in one Graph ``$batch``.

A process's workers keep one :class:`InHand` ledger of the Graph requests their jobs in hand will
make per mailbox (connection). Graph runs at most four requests of a mailbox at once, and a
``$batch`` of twenty takes all four for its whole run: a worker that claimed more work of a mailbox
already at its budget would only sit waiting for it while other mailboxes' work waits in the
queue, so the claim passes such mailboxes over.

While a worker runs, a companion thread beats every third of the lease: it writes the worker's
``heartbeats`` row and extends the lease of the jobs in hand, so a long job is not reaped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from app.core.queue import Job, JobQueue
from app.core.wakeup import Wakeup
from app.microsoft.graph import MAILBOX_CONCURRENCY
from handlers.errors import Deferred, JobError, PermanentError, RetryLater
from handlers.retry import Retry

log = logging.getLogger(__name__)

Outcome = Exception | None


@dataclass(frozen=True)
class BatchHandler:
    """Runs up to ``size`` jobs of one kind and one connection in one call.

    ``handle`` returns each job's outcome by job id: an exception, treated as if that job alone had
    raised it, or ``None`` (or no entry) for done. If ``handle`` raises, every job of the batch fails.
    """

    handle: Callable[[list[Job]], Mapping[int, Outcome]]
    size: int = 20
    #: How long a fresh partial batch waits for the rest of its burst (seconds; 0: never). A batch of
    #: several jobs but fewer than ``size``, whose newest job arrived less than this long ago, is
    #: part of a burst still arriving (Graph spreads one over several POSTs): the worker waits until
    #: that job is this old, then tops the batch up. A lone job never waits.
    gather: float = 0.0


Handler = Callable[[Job], None] | BatchHandler


class InHand:
    """How many Graph requests at once the jobs in hand of a process's workers will make, per connection.

    :param on_free: called when a connection's budget stops being full (the pool wakes its idle workers,
        which passed that connection's work over).
    """

    def __init__(self, budget: int, on_free: Callable[[], None] = lambda: None) -> None:
        self.budget, self.on_free = budget, on_free
        self._requests: dict[int, int] = {}
        self._lock = threading.Lock()

    def full(self) -> set[int]:
        """The connections whose whole budget is spoken for."""
        with self._lock:
            return {connection for connection, requests in self._requests.items() if requests >= self.budget}

    @contextlib.contextmanager
    def holding(self, jobs: list[Job]) -> Iterator[None]:
        """Count ``jobs`` (of one connection) in hand for the block: a batch makes up to ``budget``
        requests at once, any other job one."""
        connection, requests = jobs[0].connection_id, min(len(jobs), self.budget)
        if connection is None:
            yield
            return
        with self._lock:
            self._requests[connection] = self._requests.get(connection, 0) + requests
        try:
            yield
        finally:
            with self._lock:
                was_full = self._requests[connection] >= self.budget
                self._requests[connection] -= requests
                if not self._requests[connection]:
                    del self._requests[connection]
            if was_full:
                self.on_free()


class Crew:
    """What a worker tells its pool: it claimed work, finished it, or found none. A lone
    :class:`Worker` has this one, which never grows nor retires anyone."""

    def claimed(self) -> None:
        """The worker holds jobs now."""

    def finished(self) -> None:
        """The worker's jobs are settled."""

    def retire(self, worker: Worker) -> bool:
        """The worker found nothing to claim: should it stop? (It then stops at once.)"""
        return False


class Worker:
    """One worker loop (rq's ``work()``), run in its own thread by :class:`WorkerPool`.

    :param on_outcome: called with the job, ``"done"``, ``"retry"`` or ``"dead"``, and the reason
        slug, after each outcome is recorded (for metrics).
    :param in_hand: the ledger shared with the process's other workers (:class:`InHand`).
    :param busy_elsewhere: the connections whose Graph budget other processes hold whole just now
        (their work is passed over as well).
    :param crew: the pool the worker belongs to (:class:`WorkerPool`), told when it claims and finishes
        work and asked whether to retire when it found none.
    """

    def __init__(self, queue: JobQueue, handlers: Mapping[str, Handler], *, worker_id: str,
                 lease_seconds: float = 60.0, retry_policy: Retry = Retry(), clock: Callable[[], float] = time.time,
                 stop_event: threading.Event | None = None, poll_interval: float = 1.0,
                 reap_interval: float = 30.0, wakeup: Wakeup | None = None,
                 on_outcome: Callable[[Job, str, str | None], None] | None = None,
                 in_hand: InHand | None = None, busy_elsewhere: Callable[[], set[int]] = set,
                 crew: Crew | None = None) -> None:
        self.queue, self.handlers, self.worker_id = queue, handlers, worker_id
        self.in_hand, self.busy_elsewhere = in_hand or InHand(MAILBOX_CONCURRENCY), busy_elsewhere
        self.crew = crew or Crew()
        self.lease_seconds, self.retry_policy, self.clock = lease_seconds, retry_policy, clock
        self.stop_event = stop_event or threading.Event()
        self.poll_interval, self.reap_interval, self.on_outcome = poll_interval, reap_interval, on_outcome
        self.wakeup = wakeup or Wakeup()
        self._seen = self.wakeup.generation()
        self._in_hand: tuple[int, ...] = ()
        self._next_reap = 0.0

    def notify(self) -> None:
        """Wake the worker now: work was just enqueued (else it looks again every ``poll_interval``)."""
        self.wakeup.notify()

    def run(self) -> None:
        """Work until the stop event is set; the job in hand is finished first."""
        log.debug("Worker %s: started", self.worker_id)
        beating = threading.Event()
        beater = threading.Thread(target=self._beat_until, args=(beating,), name=f"{self.worker_id} heartbeat",
                                  daemon=True)
        beater.start()
        try:
            while not self.stop_event.is_set():
                try:
                    busy = self.work_once()
                except Exception:
                    log.error("Worker %s: could not claim or settle a job", self.worker_id, exc_info=True)
                    busy = False
                if not busy and not self.stop_event.is_set():
                    if self.crew.retire(self):
                        break
                    self._seen = self.wakeup.wait(self._seen, self.poll_interval)
        finally:
            beating.set()
            beater.join()
            self.queue.disconnect()
            log.debug("Worker %s: stopped", self.worker_id)

    def work_once(self) -> bool:
        """Reap expired leases if due, then claim and run the next ready job (or batch).

        Returns False when there was nothing to do. Jobs claimed after a stop was requested are
        released untouched.
        """
        now = self.clock()
        if now >= self._next_reap:
            self._next_reap = now + self.reap_interval
            reaped = self.queue.reap_expired(now, max_attempts=self.retry_policy.max_attempts)
            if any(reaped):
                log.warning("Worker %s: reaped expired leases: %d re-queued, %d abandoned",
                            self.worker_id, reaped.requeued, reaped.dead)
        jobs = self._claim(now)
        if not jobs:
            return False
        if self.stop_event.is_set():
            for job in jobs:
                self.queue.release(job.id, self.worker_id)
            return False
        self._in_hand = tuple(job.id for job in jobs)
        self.crew.claimed()
        try:
            with self.in_hand.holding(jobs):
                self._record_all(jobs, self._dispatch(jobs))
        finally:
            self._in_hand = ()
            self.crew.finished()
        return True

    def _claim(self, now: float) -> list[Job]:
        busy = self.in_hand.full() | self.busy_elsewhere()
        job = self.queue.claim(self.worker_id, self.lease_seconds, now=now, skip_connections=busy)
        if job is None:
            return []
        handler = self.handlers.get(job.kind)
        if not isinstance(handler, BatchHandler):
            return [job]
        jobs = [job, *self._claim_more(job, handler.size - 1, now)]
        wait = max(j.created_at for j in jobs) + handler.gather - self.clock()
        if handler.gather and 1 < len(jobs) < handler.size and wait > 0:
            self.stop_event.wait(min(wait, handler.gather))
            jobs += self._claim_more(job, handler.size - len(jobs), self.clock())
        return jobs

    def _claim_more(self, job: Job, limit: int, now: float) -> list[Job]:
        """Up to ``limit`` more ready jobs of ``job``'s kind and connection."""
        return self.queue.claim_batch(self.worker_id, self.lease_seconds, kind=job.kind,
                                      connection_id=job.connection_id, limit=limit, now=now)

    def _dispatch(self, jobs: list[Job]) -> dict[int, Outcome]:
        handler = self.handlers.get(jobs[0].kind)
        log.debug("Worker %s: running %s job(s) %s", self.worker_id, jobs[0].kind, [job.id for job in jobs])
        try:
            if handler is None:
                raise PermanentError("unknown_kind")
            if isinstance(handler, BatchHandler):
                return dict(handler.handle(jobs))
            handler(jobs[0])
            return {}
        except Exception as e:
            return {job.id: e for job in jobs}

    def _record_all(self, jobs: list[Job], outcomes: Mapping[int, Outcome]) -> None:
        """Complete the jobs that succeeded, in one statement; retry or dead-letter the others."""
        done = [job for job in jobs if outcomes.get(job.id) is None]
        completed = self.queue.complete([job.id for job in done], self.worker_id) if done else set()
        for job in done:
            self._note(job, "done", None, job.id in completed)
        for job in jobs:
            error = outcomes.get(job.id)
            if error is not None:
                self._record(job, error)

    def _record(self, job: Job, error: Exception) -> None:
        """Retry or dead-letter ``job`` according to what its handler raised."""
        if isinstance(error, Deferred):  # before the attempt limit: this attempt does not count
            reason, delay = error.reason, self.retry_policy.after_throttle(error.retry_after)
            outcome, recorded = "retry", self.queue.retry(job.id, self.worker_id, delay, reason,
                                                          now=self.clock(), counts=False)
        elif isinstance(error, PermanentError) or job.attempts >= self.retry_policy.max_attempts:
            reason = self._reason(job, error)
            outcome, recorded = "dead", self.queue.dead_letter(job.id, self.worker_id, reason)
        else:
            reason = self._reason(job, error)
            retry_after = error.retry_after if isinstance(error, RetryLater) else None
            delay = self.retry_policy.next_delay(job.attempts, retry_after)
            outcome, recorded = "retry", self.queue.retry(job.id, self.worker_id, delay, reason, now=self.clock())
        self._note(job, outcome, reason, recorded)

    def _note(self, job: Job, outcome: str, reason: str | None, recorded: bool) -> None:
        """Log the outcome and report it; or say it was lost with the lease."""
        if not recorded:
            log.warning("Worker %s: lost the lease on job %s (%s); its outcome (%s) was not recorded",
                        self.worker_id, job.id, job.kind, outcome)
            return
        log.log(logging.WARNING if outcome == "dead" else logging.INFO, "Worker %s: job %s (%s) %s%s",
                self.worker_id, job.id, job.kind, outcome, f" ({reason})" if reason else "")
        if self.on_outcome is not None:
            self.on_outcome(job, outcome, reason)

    def _reason(self, job: Job, error: Exception) -> str:
        """The reason slug of a failure; an unexpected one is logged with its traceback."""
        if isinstance(error, JobError):
            return error.reason
        log.error("Worker %s: job %s (%s) failed unexpectedly", self.worker_id, job.id, job.kind, exc_info=error)
        return f"unexpected_{type(error).__name__}"

    def _beat_until(self, stop: threading.Event) -> None:
        """Heartbeat thread: mark the worker alive and extend the leases in hand until ``stop``."""
        try:
            while True:
                try:
                    now = self.clock()
                    self.queue.heartbeat(self.worker_id, now)
                    for job_id in self._in_hand:
                        self.queue.extend_lease(job_id, self.worker_id, self.lease_seconds, now=now)
                except Exception:
                    log.warning("Worker %s: heartbeat failed", self.worker_id, exc_info=True)
                if stop.wait(self.lease_seconds / 3):
                    return
        finally:
            self.queue.disconnect()


class WorkerPool(Crew):
    """Up to ``n`` workers in threads, sharing one stop event, one :class:`~app.core.wakeup.Wakeup`
    and one :class:`InHand` ledger.

    The pool follows the work: it starts with one worker, and whenever every worker it has is holding
    jobs it starts another (up to ``n``), so there is always one waiting for what arrives next; a
    worker that finds nothing to claim while another waits too retires. A backlog over many mailboxes
    so gets a worker per ``$batch`` in flight, up to each mailbox's four requests (workers pass over
    a mailbox whose budget is spoken for), and a quiet service keeps one thread polling, not ``n``.

    :param name: prefix of the worker ids (default ``host:pid``), so leases name their owner; a
        worker takes the lowest free number, so ids (and ``heartbeats`` rows) stay at most ``n``.
    :param options: passed to each :class:`Worker`.
    """

    def __init__(self, n: int, queue: JobQueue, handlers: Mapping[str, Handler], *, name: str | None = None,
                 **options) -> None:
        if n < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {n!r}")
        self.size, self.queue, self.handlers, self.options = n, queue, handlers, options
        self.prefix = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stop_event = threading.Event()
        self.wakeup = Wakeup()
        self.in_hand = InHand(MAILBOX_CONCURRENCY, on_free=self.wakeup.notify)
        self._lock = threading.Lock()
        self._running: dict[int, tuple[Worker, threading.Thread]] = {}
        self._working = 0

    @property
    def workers(self) -> list[Worker]:
        """The workers running now."""
        with self._lock:
            return [worker for worker, _ in self._running.values()]

    def start(self) -> None:
        with self._lock:
            self._add()

    def _add(self) -> None:
        """Start a worker under the lowest free number (the lock is held)."""
        number = min(set(range(self.size)) - set(self._running))
        worker = Worker(self.queue, self.handlers, worker_id=f"{self.prefix}:{number}", stop_event=self.stop_event,
                        wakeup=self.wakeup, in_hand=self.in_hand, crew=self, **self.options)
        thread = threading.Thread(target=worker.run, name=f"worker {worker.worker_id}", daemon=True)
        self._running[number] = (worker, thread)
        thread.start()

    def claimed(self) -> None:
        with self._lock:
            self._working += 1
            if self._working == len(self._running) < self.size and not self.stop_event.is_set():
                self._add()

    def finished(self) -> None:
        with self._lock:
            self._working -= 1

    def retire(self, worker: Worker) -> bool:
        with self._lock:
            if len(self._running) - self._working < 2:
                return False  # it is the one left waiting
            number = next(n for n, (w, _) in self._running.items() if w is worker)
            del self._running[number]
            return True

    def notify(self) -> None:
        """Wake every idle worker (the enqueuer calls this after committing new jobs)."""
        self.wakeup.notify()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask every worker to stop after its current job and wait; False if some are still running."""
        self.stop_event.set()
        self.notify()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [thread for _, thread in self._running.values()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)
