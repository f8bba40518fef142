"""Property-based tests of the notification and lifecycle receivers (``POST /webhooks/graph[/lifecycle]``).

Whatever arrives, the receiver answers without a 5xx, and only genuine items (known subscription, right
clientState and tenant, well-formed) become jobs: exactly one per distinct version, however the batch
mixes them with forged or broken items (lone surrogates and nested values included), and however often
it is replayed. The regression tests at the end pin the crashes fuzzing found.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.core.db import store_location, thread_db
from app.core.queue import JobQueue
from app.core.timeutil import iso
from app.records.notifications import replay_window
from app.web.context import services_of
from app.web.receiver import VALIDATION_TOKEN
from tests.fuzz.support import fuzz_app, row_counts
from tests.tables import table

TENANT = "8f4c6b0e-0000-4000-8000-000000000001"
SECRET = "a-client-state-of-at-least-32-characters!"
SUBSCRIPTION = "sub-fuzz-1"
CONNECTION = 7
RETIRED_SUBSCRIPTION = "sub-fuzz-retired"  # routable_until in the past: its notifications are not trusted
PATHS = ("/webhooks/graph", "/webhooks/graph/lifecycle")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
STATE_TABLES = ("inbox", "jobs", "records", "messages", "outbox", "message_copies", "thread_message_ids",
                "thread_conversations", "subscriptions", "connections")

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    application = fuzz_app(tmp_path_factory.mktemp("fuzz-webhooks"), "fuzz")
    db = thread_db(store_location(application.config))
    now = datetime.now(timezone.utc)
    table(db, "tenants").insert({"id": TENANT, "created_at": iso(now), "updated_at": iso(now)})
    table(db, "connections").insert({"id": CONNECTION, "tenant_id": TENANT, "user_id": "user-1", "created_at": iso(now),
                              "updated_at": iso(now)})
    for subscription_id, until in ((SUBSCRIPTION, now + timedelta(days=3)), (RETIRED_SUBSCRIPTION, now)):
        table(db, "subscriptions").insert({
            "id": subscription_id, "connection_id": CONNECTION, "resource": "/users/user-1/messages",
            "change_type": "created,updated,deleted", "client_state": services_of(application).cipher.encrypt(SECRET),
            "expires_at": iso(until), "routable_until": iso(until), "created_at": iso(now), "updated_at": iso(now)})
    return application


def counts(app) -> dict[str, int]:
    return row_counts(app, STATE_TABLES)


# -- strategies ---------------------------------------------------------------------------------

# JSON strings may carry escaped lone surrogates ("\ud800"), which Python decodes into unencodable str.
text = st.text(max_size=40) | st.builds(lambda a, s, b: a + s + b, st.text(max_size=10),
                                        st.characters(categories=["Cs"]), st.text(max_size=10))
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
message_ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=60)
etags = st.none() | st.text(alphabet="ABCDEFGHQ0123456789", min_size=1, max_size=8).map(lambda s: f'W/"{s}"')


@st.composite
def genuine_changes(draw) -> dict:
    message_id, change, etag = draw(message_ids), draw(st.sampled_from(("created", "updated", "deleted"))), draw(etags)
    resource_data = {"@odata.type": "#Microsoft.Graph.Message", "id": message_id}
    if etag is not None:
        resource_data["@odata.etag"] = etag
    return {"subscriptionId": SUBSCRIPTION, "clientState": SECRET, "tenantId": TENANT, "changeType": change,
            "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
            "resource": f"Users/user-1/Messages/{message_id}", "resourceData": resource_data}


@st.composite
def genuine_lifecycles(draw) -> dict:
    return {"subscriptionId": SUBSCRIPTION, "clientState": SECRET, "tenantId": TENANT,
            "lifecycleEvent": draw(st.sampled_from(LIFECYCLE_EVENTS)),
            "subscriptionExpirationDateTime": draw(st.sampled_from(("2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")))}


def _set(item: dict, key: str, value) -> dict:
    return {**item, key: value}


def _set_resource(item: dict, key: str, value) -> dict:
    return {**item, "resourceData": {**item["resourceData"], key: value}}


def _without(item: dict, key: str) -> dict:
    return {k: v for k, v in item.items() if k != key}


def _not_in(allowed: tuple[str, ...]):
    return lambda value: not (isinstance(value, str) and value in allowed)


@st.composite
def forged(draw) -> object:
    """A genuine item with one thing wrong, or something that is not an item at all."""
    item = draw(genuine_changes() | genuine_lifecycles())
    not_secret = text.filter(lambda s: s != SECRET)
    mutations = [
        lambda: _set(item, "clientState", draw(not_secret)),
        lambda: _without(item, "clientState"),
        lambda: _set(item, "subscriptionId",
                     draw(st.sampled_from((RETIRED_SUBSCRIPTION, "sub-unknown", "")) | text.filter(lambda s: s != SUBSCRIPTION))),
        lambda: _set(item, "subscriptionId", draw(json_values.filter(lambda v: not isinstance(v, str)))),
        lambda: _set(item, "subscriptionId", SUBSCRIPTION + "x" * 200),
        lambda: _set(item, "tenantId", draw(json_values.filter(lambda v: v != TENANT))),
        lambda: draw(json_values.filter(lambda v: not isinstance(v, dict))),
    ]
    if "lifecycleEvent" in item:
        mutations.append(lambda: _set(item, "lifecycleEvent", draw(json_values.filter(_not_in(LIFECYCLE_EVENTS)))))
    else:
        mutations += [
            lambda: _set(item, "changeType", draw(json_values.filter(_not_in(("created", "updated", "deleted"))))),
            lambda: _set(item, "resourceData", draw(json_values.filter(lambda v: not isinstance(v, dict)))),
            lambda: _set_resource(item, "id", draw(st.sampled_from(("", None, 7, [], {}, "x" * 513, "A\udc80")))),
            lambda: {**item, "resourceData": _without(item["resourceData"], "id")},
        ]
    return draw(st.sampled_from(mutations))()


def expected_new_jobs(items: list) -> int:
    """Jobs posts of genuine ``items`` within one replay window must add to an empty queue: one per
    version, or without an etag one per message and change type."""
    keys = set()
    for item in items:
        if "lifecycleEvent" in item:
            keys.add(("life", item["lifecycleEvent"], item["subscriptionExpirationDateTime"]))
            continue
        data = item["resourceData"]
        version = "deleted" if item["changeType"] == "deleted" else data.get("@odata.etag", item["changeType"])
        keys.add(("msg", data["id"], version))
    return len(keys)


# -- properties -----------------------------------------------------------------------------------

@FUZZ
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      st.dictionaries(text, json_values, max_size=3).map(lambda d: json.dumps({"value": d}).encode())),
       content_type=st.sampled_from(("application/json", "application/json; charset=utf-8", "text/plain", "",
                                     "application/x-www-form-urlencoded", "multipart/form-data")),
       path=st.sampled_from(PATHS))
def test_arbitrary_bodies_get_a_4xx_or_202_and_queue_nothing(app, client, body, content_type, path):
    before = counts(app)
    rv = client.post(path, data=body, content_type=content_type)
    assert rv.status_code in (202, 400, 413, 415), rv.get_data()[:200]
    if rv.status_code >= 400:
        assert rv.get_json()["error"]["code"]
    assert counts(app) == before


@FUZZ
@given(batch=st.lists(st.tuples(st.booleans(), genuine_changes() | genuine_lifecycles(), forged()), max_size=12),
       path=st.sampled_from(PATHS), replays=st.integers(min_value=1, max_value=2))
def test_only_genuine_items_become_jobs_once_per_version(app, client, batch, path, replays):
    db = thread_db(store_location(app.config))
    db.execute("DELETE FROM jobs")  # each example starts from an empty queue
    items = [good if keep else bad for keep, good, bad in batch]
    genuine = [good for keep, good, _ in batch if keep]
    before = counts(app)
    window = replay_window(time.time())
    for attempt in range(replays):
        rv = client.post(path, data=json.dumps({"value": items}), content_type="application/json")
        assert rv.status_code == 202, rv.get_data()[:200]
    assume(replay_window(time.time()) == window)  # across a window's end, etag-less replays count twice
    expected = expected_new_jobs(genuine)
    JobQueue(db).drain_inbox()  # as the workers' next claim does
    after = counts(app)
    assert after["jobs"] - before["jobs"] == expected
    assert {k: v for k, v in after.items() if k != "jobs"} == {k: v for k, v in before.items() if k != "jobs"}
    for row in db.query("SELECT kind, connection_id, payload FROM jobs"):
        payload = json.loads(row["payload"])
        assert row["connection_id"] == CONNECTION
        assert set(payload) <= {"subscription_id", "message_id", "change_type", "event"}
        assert payload["subscription_id"] == SUBSCRIPTION


@FUZZ
@given(token=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200) | st.text(max_size=200),
       path=st.sampled_from(PATHS), body=st.binary(max_size=50))
def test_the_validation_handshake_echoes_only_plain_tokens_and_changes_nothing(app, client, token, path, body):
    before = counts(app)
    rv = client.post(path, query_string={"validationToken": token}, data=body, content_type="text/plain")
    if VALIDATION_TOKEN.fullmatch(token):
        assert rv.status_code == 200
        assert rv.mimetype == "text/plain"
        assert rv.get_data(as_text=True) == token
    else:
        assert rv.status_code == 400 and rv.get_json()["error"]["code"] == "invalid_validation_token"
    assert counts(app) == before


# -- regressions: crashes fuzzing found (500s before the fix) -----------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_deeply_nested_json_is_rejected_with_400(app, client, path):
    before = counts(app)
    rv = client.post(path, data='{"value": ' + "[" * 100_000, content_type="application/json")
    assert rv.status_code == 400
    assert counts(app) == before


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("field", ["subscriptionId", "clientState", "tenantId", "changeType", "lifecycleEvent"])
def test_a_lone_surrogate_in_an_item_is_rejected_not_a_500(app, client, path, field):
    item = {"subscriptionId": SUBSCRIPTION, "clientState": SECRET, "tenantId": TENANT, "changeType": "created",
            "resourceData": {"id": "AAMk-1", "@odata.etag": 'W/"1"'}}
    item[field] = "\ud800" + item.get(field, "")
    before = counts(app)
    rv = client.post(path, data=json.dumps({"value": [item]}), content_type="application/json")
    assert rv.status_code == 202
    assert counts(app) == before


@pytest.mark.parametrize("field, value", [("lifecycleEvent", ["missed"]), ("changeType", {"created": 1})])
def test_an_unhashable_event_or_change_type_is_a_malformed_item(app, client, field, value):
    item = {"subscriptionId": SUBSCRIPTION, "clientState": SECRET, "tenantId": TENANT, field: value,
            "resourceData": {"id": "AAMk-1", "@odata.etag": 'W/"1"'}}
    before = counts(app)
    rv = client.post("/webhooks/graph", json={"value": [item]})
    assert rv.status_code == 202
    assert counts(app) == before
