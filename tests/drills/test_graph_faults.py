"""Drill: Graph fails one call in five with 429 or a 5xx while a burst of replies arrives.

Proves that transient failures (each ``$batch`` item fails on its own) are retried with backoff,
honour Retry-After, and end with every reply linked once: no dead letters, no duplicates, no job left.
"""

from __future__ import annotations

import time

from tests.drills.harness import (
    assert_exactly_once, deliver_reply, job_states, queue_settled, reply_id, thread_ids, wait_for_replies,
)
from tests.e2e.waiting import wait_for

BURST = 30
FAILURE_RATE = 0.2
STATUSES = (429, 500, 502, 503, 504)


def test_one_graph_call_in_five_failing_still_links_everything_once(service, api, megan, db, connected):
    emulator, record = service.emulator, connected["record"]
    # Rules are tried in turn; each fires with rate p, so together they fail 1 - (1 - p)^5 = 20% of calls.
    per_rule = 1 - (1 - FAILURE_RATE) ** (1 / len(STATUSES))
    for status in STATUSES:
        emulator.add_graph_fault(status, rate=per_rule, retry_after=1)
    for n in range(BURST):
        deliver_reply(emulator, megan, "flaky", n)
        time.sleep(0.01)

    expected = {reply_id("flaky", n) for n in range(BURST)}
    wait_for_replies(api, record["id"], expected, timeout=60)
    wait_for(lambda: queue_settled(db), timeout=60, message="no job queued or running")

    rules = emulator.faults.rules
    calls, failed = rules[0].calls, sum(rule.fired for rule in rules)
    assert failed >= 3, f"only {failed} of {calls} Graph calls failed; the drill proves nothing"
    assert_exactly_once(thread_ids(api, record["id"]), expected)
    assert len(thread_ids(api, record["id"])) == BURST + 1
    copies = list(db.query("SELECT graph_id, count(*) AS n FROM message_copies GROUP BY graph_id HAVING n > 1"))
    assert not copies, f"a mailbox message was linked twice: {copies}"
    assert job_states(db).get("dead", 0) == 0, list(db.query("SELECT kind, last_error FROM jobs WHERE state = 'dead'"))
    retried = list(db.query("SELECT count(*) AS n FROM jobs WHERE kind = 'message' AND attempts > 1"))[0]["n"]
    assert retried > 0, "no message job needed a second attempt"
    assert api.get("/healthz").status_code == 200
