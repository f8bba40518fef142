"""Graph requests in flight per mailbox, shared by every process on the store (app.core.mailbox_slots)."""

from __future__ import annotations

import threading
import time

import pytest

from app.core.db import close_thread_dbs, thread_db
from app.core.mailbox_slots import HeldOff, MailboxSlots, SlotsBusy

pytestmark = pytest.mark.both_engines


def process(db_path, **kwargs) -> MailboxSlots:
    """One process's slots (each ``MailboxSlots`` is a process of its own)."""
    return MailboxSlots(lambda: thread_db(db_path), **kwargs)


def test_processes_together_never_hold_more_than_the_mailbox_s_slots(db_path):
    """Three processes with four threads each call one mailbox: never more than 4 requests at once."""
    processes = [process(db_path) for _ in range(3)]
    in_flight, peak, lock = [0], [0], threading.Lock()

    def call(slots: MailboxSlots, n: int) -> None:
        try:
            for _ in range(5):
                with slots.hold("7", n):
                    with lock:
                        in_flight[0] += n
                        peak[0] = max(peak[0], in_flight[0])
                    time.sleep(0.01)
                    with lock:
                        in_flight[0] -= n
        finally:
            close_thread_dbs()

    threads = [threading.Thread(target=call, args=(slots, 1 + (i % 2) * 3)) for slots in processes for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 4 and in_flight[0] == 0
    assert list(thread_db(db_path).query("SELECT * FROM mailbox_slots")) == []


def test_a_batch_takes_all_four_slots_and_another_mailbox_is_not_held_up(db_path):
    first, second = process(db_path), process(db_path)
    with first.hold("7", 20):
        with pytest.raises(SlotsBusy, match="1 of its 4 slots did not come free"):
            with second.hold("7", 1, timeout=0.2):
                pass
        with second.hold("8", 4):
            pass
    with second.hold("7", 4, timeout=0.2):
        pass


def test_slots_of_a_process_that_died_run_out_and_a_live_one_keeps_its_own(db_path):
    clock = [1000.0]
    dead = process(db_path, clock=lambda: clock[0], hold_seconds=10)
    alive = process(db_path, clock=lambda: clock[0], hold_seconds=10)
    other = process(db_path, clock=lambda: clock[0], hold_seconds=10)
    holding = dead.hold("7", 2)
    holding.__enter__()  # and never leaves: the process was killed
    with alive.hold("7", 2):
        clock[0] += 8
        assert alive.keep_alive() == 2
        clock[0] += 8  # the dead process's slots ran out; the live one's were pushed back
        with pytest.raises(SlotsBusy):
            with other.hold("7", 3, timeout=0.1):
                pass
        with other.hold("7", 2, timeout=0.1):
            pass


def test_a_retry_after_one_process_got_keeps_every_process_off_the_mailbox(db_path):
    clock = [1000.0]
    first, second = (process(db_path, clock=lambda: clock[0]) for _ in range(2))
    first.hold_off("7", 30)
    first.hold_off("7", 5)  # a shorter one later does not cut the first short
    with pytest.raises(HeldOff) as held:
        with second.hold("7"):
            pass
    assert held.value.remaining == 30
    with second.hold("8"):  # other mailboxes are not held off
        pass
    clock[0] += 30.5
    with second.hold("7"):
        pass


def test_full_names_the_mailboxes_no_process_may_call_now(db_path):
    first, second = process(db_path), process(db_path)
    with first.hold("7", 2), second.hold("7", 2), first.hold("8", 3):
        assert second.full() == {"7"}
        first.hold_off("9", 30)
        assert first.full() == {"7", "9"}
    assert second.full() == {"9"}
