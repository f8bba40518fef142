"""The durable queue over the ``jobs`` table, driven with an explicit clock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from app.core.db import close_thread_dbs, open_db
from app.core.queue import JobQueue, JobState, NewJob

T0 = 1_700_000_000.0
pytestmark = pytest.mark.both_engines


@pytest.fixture
def queue(db_path: Path) -> JobQueue:
    return JobQueue(db_path, max_attempts=3, clock=lambda: T0)


def row(queue: JobQueue, job_id: int) -> dict:
    return next(queue.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))


def test_enqueue_then_claim_leases_the_job(queue):
    job_id = queue.enqueue("message", {"graph_id": "AAMk1"}, connection_id=7)
    job = queue.claim("w1", lease_seconds=30)
    assert (job.id, job.kind, job.payload, job.connection_id) == (job_id, "message", {"graph_id": "AAMk1"}, 7)
    assert (job.state, job.attempts, job.lease_owner, job.lease_expires_at) == (JobState.RUNNING, 1, "w1", T0 + 30)
    assert queue.claim("w2", lease_seconds=30) is None


def test_duplicate_dedupe_key_is_ignored(queue):
    first = queue.enqueue("message", {"n": 1}, dedupe_key="sub|created|AAMk1|W/1")
    assert queue.enqueue("message", {"n": 2}, dedupe_key="sub|created|AAMk1|W/1") is None
    assert queue.enqueue("message", {"n": 3}) != queue.enqueue("message", {"n": 3})  # no key, no dedupe
    assert row(queue, first)["payload"] == '{"n":1}'


def test_duplicate_is_ignored_even_after_the_first_is_done(queue):
    queue.enqueue("message", {}, dedupe_key="k")
    queue.complete([queue.claim("w1", 30).id], "w1")
    assert queue.enqueue("message", {}, dedupe_key="k") is None


def jobs(queue: JobQueue, columns: str = "kind, dedupe_key, connection_id, payload, run_after") -> list[dict]:
    return list(queue.db.query(f"SELECT {columns} FROM jobs ORDER BY id"))


def test_enqueue_many_becomes_jobs_at_the_next_claim_skipping_duplicates(queue):
    queue.enqueue("message", {}, dedupe_key="a")
    queue.enqueue_many([NewJob("message", {"i": i}, dedupe_key=key, connection_id=4) for i, key in enumerate("abcb")])
    assert len(jobs(queue)) == 1  # acknowledged: in the inbox, one row
    assert queue.claim("w", 30).dedupe_key == "a"
    rows = jobs(queue)
    assert rows == [{"kind": "message", "dedupe_key": "a", "connection_id": None, "payload": "{}", "run_after": T0},
                    {"kind": "message", "dedupe_key": "b", "connection_id": 4, "payload": '{"i":1}', "run_after": T0},
                    {"kind": "message", "dedupe_key": "c", "connection_id": 4, "payload": '{"i":2}', "run_after": T0}]


def test_enqueue_many_from_many_threads_stores_every_job_and_fails_only_the_bad_call(db_path):
    """Concurrent receivers: every call is all or none, and one bad call costs no other its rows."""
    queue = JobQueue(db_path)
    errors: list[Exception] = []

    def enqueue(n: int) -> None:
        kind = None if n == 13 else "message"  # no kind: this one call must fail, alone
        try:
            queue.enqueue_many([NewJob(kind, {"n": n, "i": i}, dedupe_key=f"{n}|{i}") for i in range(10)])
        except Exception as e:
            errors.append(e)
        finally:
            close_thread_dbs()

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.drain_inbox()
    keys = {row["dedupe_key"] for row in queue.db.query("SELECT dedupe_key FROM jobs")}
    assert keys == {f"{n}|{i}" for n in range(40) if n != 13 for i in range(10)}
    assert len(errors) == 1 and isinstance(errors[0], ValueError)


def test_enqueue_many_is_all_or_nothing(queue):
    with pytest.raises(ValueError):
        queue.enqueue_many([NewJob("message", {}), NewJob(None, {})])  # a job needs a kind
    assert queue.stats().by_state["queued"] == 0


def test_the_inbox_drains_in_arrival_order_dropping_keys_already_taken(queue):
    done = queue.enqueue("message", {}, dedupe_key="old")
    queue.complete([queue.claim("w", 30).id], "w")
    queue.enqueue_many([NewJob("message", {"n": 1}, dedupe_key="x", connection_id=1),
                        NewJob("lifecycle", {"n": 2}, connection_id=2)], now=T0 + 1)
    queue.enqueue_many([NewJob("message", {"n": 3}, dedupe_key="old"), NewJob("message", {"n": 4}, dedupe_key="x"),
                        NewJob("message", {"n": 5}, dedupe_key="y", run_after=T0 + 60)], now=T0 + 2)
    assert queue.drain_inbox(now=T0 + 5) == 2
    assert queue.drain_inbox(now=T0 + 6) == 0
    rows = jobs(queue, "id, kind, dedupe_key, connection_id, payload, run_after, created_at, updated_at")
    assert rows[0]["id"] == done
    # Ids follow arrival (PostgreSQL spends an id on each dropped duplicate: they need not be consecutive).
    ids = [row.pop("id") for row in rows]
    assert ids == sorted(ids)
    # A job keeps its delivery's time, so queue lag counts the wait in the inbox.
    assert rows[1:] == [
        {"kind": "message", "dedupe_key": "x", "connection_id": 1, "payload": '{"n":1}',
         "run_after": T0 + 1, "created_at": T0 + 1, "updated_at": T0 + 5},
        {"kind": "lifecycle", "dedupe_key": None, "connection_id": 2, "payload": '{"n":2}',
         "run_after": T0 + 1, "created_at": T0 + 1, "updated_at": T0 + 5},
        {"kind": "message", "dedupe_key": "y", "connection_id": None, "payload": '{"n":5}',
         "run_after": T0 + 60, "created_at": T0 + 2, "updated_at": T0 + 5}]


def test_draining_moves_at_most_the_limit_oldest_first(queue):
    for n in range(5):
        queue.enqueue_many([NewJob("message", {"n": n})])
    assert queue.drain_inbox(limit=2) == 2
    assert [row["payload"] for row in jobs(queue)] == ['{"n":0}', '{"n":1}']
    assert queue.drain_inbox(limit=10) == 3
    assert len(jobs(queue)) == 5


def fail_inserts_of(db, engine: str, dedupe_key: str) -> None:
    """Make each insert of a job with ``dedupe_key`` fail, as a failing disk would fail a write."""
    if engine == "sqlite":
        db.execute(f"CREATE TRIGGER fail BEFORE INSERT ON jobs WHEN NEW.dedupe_key = '{dedupe_key}'"
                   " BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
        return
    db.execute(f"CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.dedupe_key ="
               f" '{dedupe_key}' THEN RAISE integrity_constraint_violation USING MESSAGE = 'disk trouble'; END IF;"
               " RETURN NEW; END $$")
    db.execute("CREATE TRIGGER fail BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION fail()")


def test_a_drain_that_fails_moves_nothing_and_loses_nothing(queue, engine):
    queue.enqueue_many([NewJob("message", {"n": 1}, dedupe_key="fine")])
    queue.enqueue_many([NewJob("message", {"n": 2}, dedupe_key="boom")])
    fail_inserts_of(queue.db, engine, "boom")
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        queue.drain_inbox()
    assert jobs(queue) == [] and queue.db.execute("SELECT count(*) FROM inbox").fetchone()[0] == 2
    queue.db.execute("DROP TRIGGER fail" + (" ON jobs" if engine == "postgresql" else ""))
    assert queue.drain_inbox() == 2
    assert {row["dedupe_key"] for row in jobs(queue)} == {"fine", "boom"}


def test_jobs_in_the_inbox_count_as_queued_and_as_lag(queue):
    queue.enqueue("message", {}, run_after=T0 - 5)
    queue.enqueue_many([NewJob("message", {}), NewJob("lifecycle", {})], now=T0 - 30)
    stats = queue.stats(now=T0)
    assert stats.by_state["queued"] == 3
    assert (stats.by_kind["message"]["queued"], stats.by_kind["lifecycle"]["queued"]) == (2, 1)
    assert stats.oldest_pending_age == 30


def test_claim_takes_ready_jobs_oldest_first(queue):
    later = queue.enqueue("message", {}, run_after=T0 + 60)
    second = queue.enqueue("message", {}, run_after=T0 - 5)
    first = queue.enqueue("message", {}, run_after=T0 - 10)
    assert [queue.claim("w", 30).id, queue.claim("w", 30).id] == [first, second]
    assert queue.claim("w", 30) is None
    assert queue.claim("w", 30, now=T0 + 60).id == later


def test_claim_batch_takes_one_kind_of_one_connection(queue):
    mine = [queue.enqueue("message", {"i": i}, connection_id=1) for i in range(4)]
    queue.enqueue("message", {}, connection_id=2)
    queue.enqueue("send", {}, connection_id=1)
    queue.enqueue("message", {}, connection_id=1, run_after=T0 + 60)
    batch = queue.claim_batch("w", 30, kind="message", connection_id=1, limit=3)
    assert [job.id for job in batch] == mine[:3]
    assert all(job.state == JobState.RUNNING and job.lease_owner == "w" for job in batch)
    assert [job.id for job in queue.claim_batch("w", 30, kind="message", connection_id=1, limit=20)] == mine[3:]


def test_claim_batch_matches_jobs_without_a_connection(queue):
    job_id = queue.enqueue("lifecycle", {})
    assert [job.id for job in queue.claim_batch("w", 30, kind="lifecycle", connection_id=None, limit=5)] == [job_id]


def test_a_batch_completes_in_one_call_but_only_the_jobs_the_worker_still_holds(queue):
    ids = [queue.enqueue("message", {"n": n}, dedupe_key=f"n{n}") for n in range(3)]
    held = [job.id for job in queue.claim_batch("w1", 30, kind="message", connection_id=None, limit=2)]
    queue.claim("w2", 30)  # the third job is another worker's
    assert queue.complete(ids, "w1") == set(held)
    assert [row(queue, job_id)["state"] for job_id in ids] == ["done", "done", "running"]


def test_only_the_lease_owner_settles_a_job(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert not queue.complete([job_id], "w2")
    assert not queue.extend_lease(job_id, "w2", 30)
    assert queue.complete([job_id], "w1") == {job_id}
    assert not queue.complete([job_id], "w1")  # already done
    assert row(queue, job_id)["state"] == "done"


def test_extend_lease_pushes_the_expiry(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert queue.extend_lease(job_id, "w1", 30, now=T0 + 20)
    assert row(queue, job_id)["lease_expires_at"] == T0 + 50
    assert queue.reap_expired(now=T0 + 40) == (0, 0)


def test_retry_requeues_after_the_delay_with_the_reason(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert queue.retry(job_id, "w1", delay=12.5, reason="throttled")
    assert queue.claim("w1", 30, now=T0 + 12) is None
    job = queue.claim("w1", 30, now=T0 + 12.5)
    assert (job.id, job.attempts, job.last_error) == (job_id, 2, "throttled")


def test_dead_letter_lists_and_retry_dead_requeues(queue):
    ids = [queue.enqueue("message", {}) for _ in range(3)]
    for offset, job_id in enumerate(ids):
        queue.claim("w1", 30)
        queue.dead_letter(job_id, "w1", "invalid_grant", now=T0 + offset)
    dead = queue.dead_letters(limit=2)
    assert [job.id for job in dead] == [ids[2], ids[1]]
    assert dead[0].last_error == "invalid_grant" and dead[0].state == JobState.DEAD
    assert queue.retry_dead([ids[0]]) == 1
    assert queue.claim("w1", 30).id == ids[0]
    assert queue.retry_dead() == 2
    assert queue.stats().by_state == {"queued": 2, "running": 1, "done": 0, "dead": 0}


def test_retry_dead_with_no_ids_changes_nothing(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    queue.dead_letter(job_id, "w1", "bad_payload")
    assert queue.retry_dead([]) == 0
    assert row(queue, job_id)["state"] == "dead"


def test_release_returns_the_job_without_counting_the_attempt(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert queue.release(job_id, "w1")
    job = queue.claim("w2", 30)
    assert (job.id, job.attempts) == (job_id, 1)


def test_reap_requeues_expired_leases_then_gives_up(queue):
    job_id = queue.enqueue("message", {})
    for attempt in range(1, 4):
        now = T0 + attempt * 100
        assert queue.claim("w1", 30, now=now).attempts == attempt
        assert queue.reap_expired(now=now + 29) == (0, 0)
        expected = (1, 0) if attempt < 3 else (0, 1)
        assert queue.reap_expired(now=now + 31) == expected
    assert (row(queue, job_id)["state"], row(queue, job_id)["last_error"]) == ("dead", "abandoned")
    assert not queue.complete([job_id], "w1")  # the reaped worker's late result is refused


def test_reap_can_be_given_the_retry_policys_attempt_limit(queue):
    queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert queue.reap_expired(now=T0 + 31, max_attempts=1) == (0, 1)


def test_prune_deletes_old_done_rows_and_much_older_dead_ones(queue):
    done_old, done_new, dead_old, dead_older = (queue.enqueue("message", {}, run_after=T0 - 2000) for _ in range(4))
    for job_id, finished, dead in [(done_old, T0 - 100, False), (done_new, T0 - 10, False),
                                   (dead_old, T0 - 100, True), (dead_older, T0 - 1001, True)]:
        assert queue.claim("w", 30, now=finished).id == job_id
        if dead:
            queue.dead_letter(job_id, "w", "bad_payload", now=finished)
        else:
            queue.complete([job_id], "w", now=finished)
    queue.enqueue("message", {}, run_after=T0 - 5000)  # queued work is never pruned, however old
    assert queue.prune(done_older_than=50) == 2
    remaining = {r["id"] for r in queue.db.query("SELECT id FROM jobs")}
    assert done_new in remaining and dead_old in remaining
    assert done_old not in remaining and dead_older not in remaining
    with pytest.raises(ValueError, match="-1"):
        queue.prune(done_older_than=-1)


def test_stats_and_oldest_pending_age(queue):
    assert queue.oldest_pending_age() == 0.0
    queue.enqueue("message", {}, run_after=T0 - 42)
    queue.enqueue("message", {}, run_after=T0 + 600)  # a retry not yet due is not lag
    queue.enqueue("send", {})
    queue.claim("w", 30, now=T0)
    stats = queue.stats()
    assert stats.by_state == {"queued": 2, "running": 1, "done": 0, "dead": 0}
    assert stats.by_kind["message"]["running"] == 1 and stats.by_kind["send"]["queued"] == 1
    assert stats.oldest_pending_age == 0.0  # the only ready one was claimed
    assert queue.oldest_pending_age(now=T0 + 700) == 700


def test_heartbeat_upserts_one_row_per_worker(queue):
    queue.heartbeat("host:1:0", now=T0)
    queue.heartbeat("host:1:0", now=T0 + 5)
    assert list(queue.db.query("SELECT * FROM heartbeats")) == [{"name": "host:1:0", "beat_at": T0 + 5}]


def test_two_workers_never_claim_the_same_job(db_path):
    """Eight threads, each on its own connection, drain 400 jobs: each job is claimed exactly once."""
    queue = JobQueue(db_path)
    queue.enqueue_many(NewJob("message", {"i": i}) for i in range(400))
    claimed: dict[str, list[int]] = {}
    errors: list[Exception] = []
    start = threading.Barrier(8)

    def drain(worker_id: str) -> None:
        mine = claimed.setdefault(worker_id, [])
        start.wait()
        try:
            while (job := queue.claim(worker_id, 30)) is not None:
                mine.append(job.id)
                queue.complete([job.id], worker_id)
        except Exception as e:  # "database is locked" is how a racy claim usually fails
            errors.append(e)
        finally:
            close_thread_dbs()

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    everything = [job_id for ids in claimed.values() for job_id in ids]
    assert len(everything) == len(set(everything)) == 400
    assert sum(1 for ids in claimed.values() if ids) > 1  # the threads really did compete
    assert queue.stats().by_state["done"] == 400


def test_database_object_and_factory_are_accepted(db_path):
    with open_db(db_path) as db:
        JobQueue(db).enqueue("message", {})
        assert JobQueue(lambda: db).claim("w", 30) is not None


def test_enqueue_unless_pending_collapses_waiting_work_but_not_finished_work(queue):
    first = queue.enqueue_unless_pending("reconcile", {"connection_id": 1}, connection_id=1)
    assert first is not None
    assert queue.enqueue_unless_pending("reconcile", {"connection_id": 1}, connection_id=1) is None
    assert queue.enqueue_unless_pending("reconcile", {"connection_id": 2}, connection_id=2) is not None
    job = queue.claim("w", 60)
    assert job.id == first
    # Running (or done) work may predate the new reason: a new job is queued.
    assert queue.enqueue_unless_pending("reconcile", {"connection_id": 1}, connection_id=1) is not None


def test_a_retry_that_does_not_count_gives_the_attempt_back(queue):
    job_id = queue.enqueue("message", {})
    queue.claim("w1", 30)
    assert queue.retry(job_id, "w1", delay=30, reason="throttled", counts=False)
    job = queue.claim("w1", 30, now=T0 + 30)
    assert (job.id, job.attempts, job.last_error) == (job_id, 1, "throttled")


def test_a_claim_passes_over_the_connections_it_is_told_to_skip(queue):
    busy = queue.enqueue("message", {}, connection_id=7)
    other = queue.enqueue("message", {}, connection_id=8)
    unowned = queue.enqueue("renew", {})
    assert queue.claim("w1", 30, skip_connections={7}).id == other
    assert queue.claim("w1", 30, skip_connections={7}).id == unowned
    assert queue.claim("w1", 30, skip_connections={7}) is None
    assert queue.claim("w1", 30).id == busy
