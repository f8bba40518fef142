"""On PostgreSQL, a commit that queues work wakes the workers of every process (LISTEN/NOTIFY)."""

from __future__ import annotations

import threading

import pytest

from app.core.db import open_db
from app.core.dialects import JOBS_CHANNEL
from app.core.postgres import Listener
from app.core.queue import JobQueue, NewJob


@pytest.fixture
def url(postgres_server):
    url = postgres_server.fresh_database()
    yield url
    postgres_server.drop(url)


@pytest.fixture
def woken(url):
    """An event another process's listener sets on each notification, cleared by the test."""
    event = threading.Event()
    listener = Listener(url, JOBS_CHANNEL, lambda _payload: event.set()).start()
    assert listener.listening.wait(10)
    yield event
    listener.stop()


def test_a_delivery_or_a_job_queued_elsewhere_wakes_the_listener(url, woken):
    with open_db(url) as db:
        queue = JobQueue(db)
        queue.enqueue_many([NewJob("message", {"n": 1})])
        assert woken.wait(5)
        woken.clear()
        assert queue.enqueue("send", {"outbox_id": 1}, dedupe_key="send:1") is not None
        assert woken.wait(5)
        woken.clear()
        assert queue.enqueue("send", {"outbox_id": 1}, dedupe_key="send:1") is None  # a duplicate queues nothing
        assert not woken.wait(0.5)


def test_a_job_queued_in_a_transaction_wakes_only_at_its_commit(url, woken):
    with open_db(url) as db:
        queue = JobQueue(db)
        with db.atomic():
            queue.enqueue("send", {"outbox_id": 2})
            assert not woken.wait(0.5)
        assert woken.wait(5)


def test_the_listener_listens_again_after_the_server_restarts(postgres_server, url, woken):
    postgres_server.restart()
    with open_db(url) as db:
        queue = JobQueue(db)
        for _ in range(100):  # until the listener is back (it retries every second)
            queue.enqueue("send", {"outbox_id": 3})
            if woken.wait(0.1):
                break
        assert woken.is_set()
