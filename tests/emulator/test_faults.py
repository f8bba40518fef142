"""Throttling and fault injection: 429 + Retry-After and its penalty, 5xx rules, latency, limits."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta


def test_429_has_retry_after_and_early_retries_are_throttled_again(emulator, alice, bob):
    emulator.faults.add_rule(429, path="/messages", times=1, retry_after=30)
    rv = alice.get("/me/messages", headers={"client-request-id": "c-1"})
    assert rv.status_code == 429 and rv.headers["Retry-After"] == "30"
    error = rv.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["innerError"]["client-request-id"] == "c-1" == rv.headers["client-request-id"]
    early = alice.get("/me/messages")
    assert early.status_code == 429 and 0 < int(early.headers["Retry-After"]) <= 30
    assert alice.get("/me").status_code == 429  # the throttle key is the mailbox, not the URL
    assert bob.get("/me/messages").status_code == 200
    emulator.clock.advance(timedelta(seconds=31))
    assert alice.get("/me/messages").status_code == 200
    assert emulator.faults.throttled == {"injected": 1, "penalty": 2}


def test_server_errors_by_method_path_and_nth_call(emulator, alice):
    emulator.faults.add_rule(503, method="POST", path="/sendMail", retry_after=2)
    emulator.faults.add_rule(500, path="/mailFolders", nth=3)
    rv = alice.post("/me/sendMail", json={"message": {"toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}})
    assert rv.status_code == 503 and rv.headers["Retry-After"] == "2"
    assert alice.get("/me/messages").status_code == 200
    statuses = [alice.get("/me/mailFolders").status_code for _ in range(4)]
    assert statuses == [200, 200, 500, 200]


def test_random_failures_follow_the_rate(emulator, alice):
    emulator.faults.add_rule(502, rate=0.5)
    statuses = [alice.get("/me").status_code for _ in range(40)]
    assert {200, 502} == set(statuses)


def test_added_latency(emulator, alice):
    emulator.faults.set_latency(150)
    started = time.monotonic()
    assert alice.get("/me").status_code == 200
    assert time.monotonic() - started >= 0.15
    emulator.faults.set_latency((0, 10))
    assert alice.get("/me").status_code == 200


def test_more_than_four_in_flight_per_mailbox_is_throttled(emulator, world, alice, bob):
    emulator.faults.set_latency(400)
    emulator.faults.retry_after_penalty = False
    with ThreadPoolExecutor(max_workers=8) as pool:
        mine = [pool.submit(alice.get, "/me") for _ in range(6)]
        theirs = [pool.submit(bob.get, "/me") for _ in range(2)]
        statuses = sorted(f.result().status_code for f in mine)
        throttled = [f.result() for f in mine if f.result().status_code == 429]
        assert [f.result().status_code for f in theirs] == [200, 200]
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert throttled[0].json()["error"]["code"] == "ApplicationThrottled"
    assert "MailboxConcurrency" in throttled[0].json()["error"]["message"]
    assert throttled[0].headers["Retry-After"] == "1"
    assert emulator.faults.peak_in_flight[(world.client_id, alice.id)] == 4


def test_request_rate_per_mailbox(emulator, alice, bob):
    emulator.faults.rate_limit = 5
    assert [alice.get("/me").status_code for _ in range(6)] == [200] * 5 + [429]
    assert bob.get("/me").status_code == 200
    emulator.clock.advance(timedelta(minutes=10))
    assert alice.get("/me").status_code == 200
