"""JSON batching: limits, per-request results, dependsOn, faults and concurrency per sub-request."""

from __future__ import annotations

import threading


def batch(user, requests_, **kwargs):
    return user.post("/$batch", json={"requests": requests_}, **kwargs)


def by_id(rv):
    assert rv.status_code == 200, rv.text
    return {r["id"]: r for r in rv.json()["responses"]}


def test_partial_failure_keeps_outer_200(emulator, alice):
    message = emulator.mail.deliver(alice.id, subject="Hi", body="x", sender="c@customer.example", to=[alice.email])
    responses = by_id(batch(alice, [
        {"id": "1", "method": "GET", "url": f"/me/messages/{message['id']}?$select=subject"},
        {"id": "2", "method": "GET", "url": f"/me/messages/{message['id'][:-6]}AAAAA="},
        {"id": "3", "method": "GET", "url": "me"},
        {"id": "4", "method": "POST", "url": "/me/sendMail", "headers": {"Content-Type": "application/json"},
         "body": {"message": {"subject": "From a batch", "toRecipients": [
             {"emailAddress": {"address": "dan@partner.example"}}]}}},
        {"id": "5", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"},
    ]))
    assert responses["1"]["status"] == 200 and responses["1"]["body"]["subject"] == "Hi"
    assert responses["2"]["status"] == 404
    assert responses["2"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert responses["3"]["body"]["id"] == alice.id
    assert responses["4"]["status"] == 202 and "body" not in responses["4"]
    assert responses["5"]["status"] == 400 and "relative" in responses["5"]["body"]["error"]["message"]
    assert responses["1"]["headers"]["Content-Type"].startswith("application/json;odata.metadata=minimal;")
    assert responses["1"]["headers"]["OData-Version"] == "4.0"


def test_batch_shape_is_checked(alice):
    get_me = {"method": "GET", "url": "/me"}
    assert batch(alice, [{"id": str(n), **get_me} for n in range(21)]).status_code == 400
    assert batch(alice, [{"id": str(n), **get_me} for n in range(20)]).status_code == 200
    assert batch(alice, [{"id": "1", **get_me}, {"id": "1", **get_me}]).status_code == 400
    assert batch(alice, [{"id": "1", "method": "POST", "url": "/me/sendMail", "body": {}}]).status_code == 400
    assert batch(alice, [{"id": "1", "dependsOn": ["9"], **get_me}]).status_code == 400
    assert alice.post("/$batch", data=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400


def test_failed_dependency_is_424(alice):
    responses = by_id(batch(alice, [
        {"id": "a", "method": "GET", "url": "/me/messages/AAMkAGmissingmissingmissing="},
        {"id": "b", "method": "GET", "url": "/me", "dependsOn": ["a"]},
        {"id": "c", "method": "GET", "url": "/me"},
    ]))
    assert responses["a"]["status"] == 404
    assert responses["b"]["status"] == 424
    assert responses["c"]["status"] == 200


def test_faults_apply_per_sub_request(emulator, alice):
    emulator.faults.add_rule(429, path=r"^/me$", nth=2, retry_after=7)
    responses = by_id(batch(alice, [
        {"id": "0", "method": "GET", "url": "/me"},
        {"id": "1", "method": "GET", "url": "/me", "dependsOn": ["0"]},
        {"id": "x", "method": "GET", "url": "/me/mailFolders"},
    ]))
    assert responses["0"]["status"] == 200
    assert responses["1"]["status"] == 429 and responses["1"]["headers"]["Retry-After"] == "7"
    assert responses["x"]["status"] == 429  # the same mailbox retried before Retry-After passed


def test_sub_requests_count_against_mailbox_concurrency(emulator, alice):
    emulator.faults.set_latency(300)
    emulator.faults.concurrency_limit = 3
    emulator.faults.retry_after_penalty = False
    results = []
    outside = threading.Thread(target=lambda: results.append(alice.get("/me").status_code))
    rv = None

    def run_batch():
        nonlocal rv
        rv = batch(alice, [{"id": str(n), "method": "GET", "url": "/me"} for n in range(4)])
    inside = threading.Thread(target=run_batch)
    inside.start()
    outside.start()
    inside.join()
    outside.join()
    statuses = sorted(r["status"] for r in rv.json()["responses"]) + results
    assert statuses.count(429) >= 1
    throttled = [r for r in rv.json()["responses"] if r["status"] == 429]
    assert all("MailboxConcurrency" in r["body"]["error"]["message"] for r in throttled)
    assert max(emulator.faults.peak_in_flight.values()) == 3
