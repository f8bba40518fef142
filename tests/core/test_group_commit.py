"""Group commit (app.core.group_commit): writers that arrive together share one write; each returns once
its own item is written, and sees the error of the write that carried it."""

from __future__ import annotations

import threading
import time

from app.core.group_commit import GroupCommit


def test_a_lone_writer_writes_at_once_and_alone():
    writes = []
    group = GroupCommit(writes.append)
    group.submit("a")
    group.submit("b")
    assert writes == [["a"], ["b"]]


def test_writers_arriving_during_a_write_share_the_next_one_and_wait_for_it():
    writes, first_started, release = [], threading.Event(), threading.Event()
    returned: dict[str, float] = {}

    def write(items):
        if not writes:
            first_started.set()
            release.wait(5)
        writes.append((list(items), time.monotonic()))

    group = GroupCommit(write)

    def submit(item):
        group.submit(item)
        returned[item] = time.monotonic()

    threads = [threading.Thread(target=submit, args=("first",))]
    threads[0].start()
    assert first_started.wait(5)
    threads += [threading.Thread(target=submit, args=(f"w{n}",)) for n in range(5)]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.1)
    assert returned == {}  # nobody returns before the write carrying its item
    release.set()
    for thread in threads:
        thread.join(5)
    assert [sorted(items) for items, _ in writes] == [["first"], ["w0", "w1", "w2", "w3", "w4"]]
    assert all(returned[item] >= writes[1][1] for item in ("w0", "w1", "w2", "w3", "w4"))


def test_every_writer_of_a_failed_write_gets_its_error_and_the_next_write_goes_ahead():
    calls, started, release = [], threading.Event(), threading.Event()

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            started.set()
            release.wait(5)
        elif len(calls) == 2:
            raise OSError("disk full")

    group = GroupCommit(write)
    errors: dict[str, BaseException | None] = {}

    def submit(item):
        try:
            group.submit(item)
            errors[item] = None
        except OSError as e:
            errors[item] = e

    first = threading.Thread(target=submit, args=("ok",))
    first.start()
    assert started.wait(5)
    others = [threading.Thread(target=submit, args=(item,)) for item in ("x", "y")]
    for thread in others:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert errors["ok"] is None
    assert [str(errors[item]) for item in ("x", "y")] == ["disk full", "disk full"]
    group.submit("after")
    assert calls[-1] == ["after"]


def test_an_item_is_never_written_twice_nor_dropped_under_contention():
    written: list[int] = []
    group = GroupCommit(lambda items: (time.sleep(0.001), written.extend(items)))
    threads = [threading.Thread(target=lambda n=n: [group.submit(n * 100 + i) for i in range(50)]) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(written) == [n * 100 + i for n in range(8) for i in range(50)]

