"""The worker: outcomes of handlers, batching, reaping, waking, heartbeats and a warm stop."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from app.core.queue import Job, JobQueue
from app.web.context import services_of
from handlers.errors import Deferred, PermanentError, RetryLater
from handlers.retry import Retry
from handlers.worker import BatchHandler, InHand, Worker, WorkerPool
from tests.tables import table

pytestmark = pytest.mark.both_engines

T0 = 1_700_000_000.0
NO_JITTER = Retry(max_attempts=3, base_delay=10, cap=100, jitter=0)


@pytest.fixture
def queue(db_path: Path) -> JobQueue:
    return JobQueue(db_path, max_attempts=3)


def make_worker(queue, handlers, **options) -> Worker:
    options = {"worker_id": "w1", "lease_seconds": 30, "retry_policy": NO_JITTER, "clock": lambda: T0, **options}
    return Worker(queue, handlers, **options)


def job_row(queue, job_id) -> dict:
    return table(queue.db, "jobs").get(job_id)


def wait_for(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_successful_job_is_done(queue):
    seen, outcomes = [], []
    job_id = queue.enqueue("message", {"graph_id": "AAMk1"}, run_after=T0)
    worker = make_worker(queue, {"message": seen.append}, on_outcome=lambda j, o, r: outcomes.append((j.id, o, r)))
    assert worker.work_once()
    assert [job.payload for job in seen] == [{"graph_id": "AAMk1"}]
    assert job_row(queue, job_id)["state"] == "done"
    assert outcomes == [(job_id, "done", None)]
    assert not worker.work_once()


def raiser(error):
    def handle(job: Job) -> None:
        raise error
    return handle


def test_retry_later_waits_at_least_retry_after(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    make_worker(queue, {"message": raiser(RetryLater("throttled", retry_after=45))}).work_once()
    row = job_row(queue, job_id)
    assert (row["state"], row["run_after"], row["last_error"]) == ("queued", T0 + 45, "throttled")


def test_retry_later_backs_off_exponentially(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    handlers = {"message": raiser(RetryLater("server_error"))}
    make_worker(queue, handlers).work_once()
    assert job_row(queue, job_id)["run_after"] == T0 + 10
    make_worker(queue, handlers, clock=lambda: T0 + 10).work_once()
    assert job_row(queue, job_id)["run_after"] == T0 + 10 + 20


def test_a_job_out_of_attempts_is_dead_lettered_with_its_reason(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    for attempt in range(3):
        clock = T0 + attempt * 1000
        make_worker(queue, {"message": raiser(RetryLater("server_error"))}, clock=lambda: clock).work_once()
    row = job_row(queue, job_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 3, "server_error")


def test_a_throttled_job_waits_the_servers_pause_and_is_never_dead_lettered_for_it(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    clock = T0
    for _ in range(2):  # two real failures: the next claim is the policy's last (of 3) attempt
        make_worker(queue, {"message": raiser(RetryLater("server_error"))}, clock=lambda: clock).work_once()
        clock = job_row(queue, job_id)["run_after"]
    for _ in range(10):
        make_worker(queue, {"message": raiser(Deferred("throttled", 45))}, clock=lambda: clock).work_once()
        row = job_row(queue, job_id)
        assert (row["state"], row["run_after"], row["attempts"]) == ("queued", clock + 45, 2)
        clock = row["run_after"]
    assert row["last_error"] == "throttled"


def test_permanent_error_is_dead_lettered_at_once(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    make_worker(queue, {"message": raiser(PermanentError("invalid_grant"))}).work_once()
    row = job_row(queue, job_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 1, "invalid_grant")


def test_unexpected_error_is_logged_and_retried(queue, caplog):
    job_id = queue.enqueue("message", {"graph_id": "opaque-graph-id"}, run_after=T0)
    with caplog.at_level(logging.INFO, logger="handlers.worker"):
        make_worker(queue, {"message": raiser(KeyError("from"))}).work_once()
    row = job_row(queue, job_id)
    assert (row["state"], row["last_error"]) == ("queued", "unexpected_KeyError")
    failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert failure.getMessage() == f"Worker w1: job {job_id} (message) failed unexpectedly"
    assert failure.exc_info[0] is KeyError
    assert all("opaque-graph-id" not in r.getMessage() for r in caplog.records)


def test_base_exceptions_are_not_caught(queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    with pytest.raises(KeyboardInterrupt):
        make_worker(queue, {"message": raiser(KeyboardInterrupt())}).work_once()
    assert job_row(queue, job_id)["state"] == "running"  # its lease will run out and it is reaped


def test_a_job_of_unknown_kind_is_dead_lettered(queue):
    job_id = queue.enqueue("mystery", {}, run_after=T0)
    make_worker(queue, {}).work_once()
    assert (job_row(queue, job_id)["state"], job_row(queue, job_id)["last_error"]) == ("dead", "unknown_kind")


def test_a_batch_handler_gets_jobs_of_one_connection_and_settles_each(queue):
    ok, throttled, gone = (queue.enqueue("message", {}, connection_id=1, run_after=T0) for _ in range(3))
    other = queue.enqueue("message", {}, connection_id=2, run_after=T0)
    batches = []

    def handle(jobs):
        batches.append([job.id for job in jobs])
        return {throttled: RetryLater("throttled", retry_after=60), gone: PermanentError("bad_payload")}

    worker = make_worker(queue, {"message": BatchHandler(handle, size=20)})
    worker.work_once()
    assert batches == [[ok, throttled, gone]]
    assert [job_row(queue, i)["state"] for i in (ok, throttled, gone, other)] == ["done", "queued", "dead", "queued"]
    worker.work_once()
    assert batches[-1] == [other]


def test_a_batch_handler_that_raises_fails_every_job(queue):
    ids = [queue.enqueue("message", {}, connection_id=1, run_after=T0) for _ in range(3)]
    make_worker(queue, {"message": BatchHandler(raiser(RetryLater("throttled")), size=2)}).work_once()
    assert [job_row(queue, i)["last_error"] for i in ids] == ["throttled", "throttled", None]


def test_jobs_claimed_after_a_stop_request_are_released(db_path, queue):
    job_id = queue.enqueue("message", {}, run_after=T0)
    stop = threading.Event()

    class StopsWhileClaiming(JobQueue):
        def claim(self, *args, **kwargs):
            stop.set()
            return super().claim(*args, **kwargs)

    ran = []
    worker = make_worker(StopsWhileClaiming(db_path), {"message": ran.append}, stop_event=stop)
    assert not worker.work_once()
    assert ran == []
    assert (job_row(queue, job_id)["state"], job_row(queue, job_id)["attempts"]) == ("queued", 0)


def test_a_lost_lease_is_reported_not_overwritten(queue, caplog):
    job_id = queue.enqueue("message", {}, run_after=T0)

    def slow(job):  # meanwhile the lease runs out and another worker takes the job
        queue.reap_expired(now=T0 + 31)
        queue.claim("w2", 30, now=T0 + 31)

    with caplog.at_level(logging.WARNING, logger="handlers.worker"):
        make_worker(queue, {"message": slow}).work_once()
    assert job_row(queue, job_id)["lease_owner"] == "w2"
    assert "lost the lease on job" in caplog.text


def test_expired_leases_are_reaped_now_and_then(queue):
    now = [T0]
    done = []
    worker = make_worker(queue, {"message": done.append}, reap_interval=60, clock=lambda: now[0])
    first = queue.enqueue("message", {}, run_after=T0 - 100)
    queue.claim("crashed", 30, now=T0 - 100)
    assert worker.work_once()
    second = queue.enqueue("message", {}, run_after=T0 - 100)
    queue.claim("crashed", 30, now=T0 - 100)
    now[0] = T0 + 59
    assert not worker.work_once()  # the next reap is not due yet
    now[0] = T0 + 60
    assert worker.work_once()
    assert [job.id for job in done] == [first, second]


def test_reaping_gives_up_after_the_retry_policys_attempts(queue):
    job_id = queue.enqueue("message", {}, run_after=T0 - 100)
    queue.claim("crashed", 30, now=T0 - 100)
    make_worker(queue, {}, retry_policy=Retry(max_attempts=1)).work_once()
    assert (job_row(queue, job_id)["state"], job_row(queue, job_id)["last_error"]) == ("dead", "abandoned")


def test_pool_wakes_on_notify_heartbeats_and_stops(db_path, queue):
    done = threading.Event()
    pool = WorkerPool(2, JobQueue(db_path), {"message": lambda job: done.set()}, name="test",
                      lease_seconds=30, poll_interval=10)
    pool.start()
    try:
        wait_for(lambda: len(list(table(queue.db, "heartbeats").rows)) == 1)
        time.sleep(0.05)  # the one worker is now idle, waiting up to 10 s
        job_id = queue.enqueue("message", {})
        pool.notify()
        assert done.wait(1.0)
        wait_for(lambda: job_row(queue, job_id)["state"] == "done")
    finally:
        assert pool.stop(timeout=2)
    assert {row["name"] for row in table(queue.db, "heartbeats").rows} <= {"test:0", "test:1"}


def test_the_pool_grows_while_every_worker_is_busy_and_shrinks_when_the_work_is_done(db_path, queue):
    """One worker waits for work; each job in hand starts another, up to the pool's size; spare
    workers retire once there is nothing to claim, leaving one."""
    release, running = threading.Event(), []

    def slow(job):
        running.append(job.id)
        release.wait(5)

    pool = WorkerPool(3, JobQueue(db_path), {"message": slow}, name="grow", lease_seconds=30, poll_interval=0.05)
    pool.start()
    try:
        assert len(pool.workers) == 1
        for _ in range(5):
            queue.enqueue("message", {})
        pool.notify()
        wait_for(lambda: len(running) == 3)
        time.sleep(0.1)
        assert len(running) == 3 and len(pool.workers) == 3  # never more than its size
        release.set()
        wait_for(lambda: len(list(table(queue.db, "jobs").rows_where("state = 'done'"))) == 5)
        wait_for(lambda: len(pool.workers) == 1)
    finally:
        assert pool.stop(timeout=2)
    assert {row["name"] for row in table(queue.db, "heartbeats").rows} == {"grow:0", "grow:1", "grow:2"}


def test_a_long_job_keeps_its_lease_and_a_stop_lets_it_finish(db_path, queue):
    started, release = threading.Event(), threading.Event()

    def long_job(job):
        started.set()
        release.wait(2)

    first = queue.enqueue("message", {})
    pool = WorkerPool(1, JobQueue(db_path), {"message": long_job}, lease_seconds=0.3, poll_interval=0.05)
    pool.start()
    try:
        assert started.wait(1)
        second = queue.enqueue("message", {})
        lease = job_row(queue, first)["lease_expires_at"]
        wait_for(lambda: job_row(queue, first)["lease_expires_at"] > lease)
        wait_for(lambda: time.time() > lease)  # the lease it was first given has run out
        assert queue.reap_expired() == (0, 0)
        pool.stop_event.set()
        release.set()
    finally:
        assert pool.stop(timeout=2)
    assert job_row(queue, first)["state"] == "done"
    assert (job_row(queue, second)["state"], job_row(queue, second)["attempts"]) == ("queued", 0)


def test_pool_needs_a_worker(queue):
    with pytest.raises(ValueError, match="0"):
        WorkerPool(0, queue, {})


def test_the_configured_retry_policy_is_the_one_the_workers_and_the_reaper_use(app_config, monkeypatch, tmp_path):
    from app import create_app
    from app.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    app = create_app({**app_config, "JOB_MAX_ATTEMPTS": "3", "JOB_RETRY_MAX_DELAY_SECONDS": "60"})
    runtime = Runtime(app, workers=2, scheduler=False)
    assert runtime.pool.options["retry_policy"] == Retry(max_attempts=3, base_delay=2.0, cap=60.0)
    assert services_of(app).queue.max_attempts == 3


def test_workers_pass_over_a_mailbox_whose_graph_budget_their_jobs_in_hand_hold(queue):
    """A batch of 20 takes all four of the mailbox's requests: a second worker of the process takes
    another mailbox's work instead of waiting for it, and the first mailbox's when the batch is done."""
    for connection in (7, 7, 7, 7, 7, 8):
        queue.enqueue("message", {}, connection_id=connection, run_after=T0)
    started, release, taken = threading.Event(), threading.Event(), []

    def handle(jobs):
        taken.append((jobs[0].connection_id, len(jobs)))
        if len(taken) == 1:
            started.set()
            release.wait(5)
        return {}

    in_hand = InHand(4)
    first, second = (make_worker(queue, {"message": BatchHandler(handle, size=4)}, worker_id=f"w{n}", in_hand=in_hand)
                     for n in (1, 2))
    thread = threading.Thread(target=first.work_once)
    thread.start()
    started.wait(5)
    assert second.work_once() and taken == [(7, 4), (8, 1)]
    assert not second.work_once()  # mailbox 7's last job waits for the batch in hand
    release.set()
    thread.join()
    assert second.work_once() and taken[-1] == (7, 1)


def test_work_of_a_mailbox_another_process_holds_whole_waits(queue):
    queue.enqueue("message", {}, connection_id=7, run_after=T0)
    busy, seen = {7}, []
    worker = make_worker(queue, {"message": seen.append}, busy_elsewhere=lambda: set(busy))
    assert not worker.work_once() and seen == []
    busy.clear()
    assert worker.work_once() and [job.connection_id for job in seen] == [7]
