"""Property-based tests of the records API bodies: ``POST /api/records`` and ``POST /api/records/{id}/messages``.

No body yields a 5xx; a rejected body changes nothing (records, messages, outbox and jobs keep their row
counts); an accepted one adds exactly its rows, and a repeated ``Idempotency-Key`` returns the same
request without adding anything. Strings may hold JSON-escaped lone surrogates and integers may exceed
SQLite's 64-bit range; the regression tests at the end pin the crashes fuzzing found.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.core.db import store_location, thread_db
from app.core.timeutil import iso
from tests.forms import sign_in_person
from tests.fuzz.support import fuzz_app, row_counts
from tests.tables import table

TOKEN = "fuzz-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TENANT = "8f4c6b0e-0000-4000-8000-000000000001"
RECORD = 1
MISSING_RECORD = 999_999
ACTIVE, INACTIVE, MISSING_CONNECTION = 7, 8, 9_999
SQLITE_MAX = 2**63 - 1
STATE_TABLES = ("records", "messages", "outbox", "jobs", "thread_message_ids", "connections")

_fresh = itertools.count(1)


def fresh_key() -> str:
    """An Idempotency-Key never used before (hypothesis repeats drawn values across examples)."""
    return f"fresh-key-{next(_fresh)}"


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    application = fuzz_app(tmp_path_factory.mktemp("fuzz-api"), TOKEN)
    db = thread_db(store_location(application.config))
    now = iso(datetime.now(timezone.utc))
    table(db, "records").insert({"id": RECORD, "title": "Acme vendor file", "created_at": now})
    table(db, "tenants").insert({"id": TENANT, "created_at": now, "updated_at": now})
    for connection_id, status, user in ((ACTIVE, "active", "user-1"), (INACTIVE, "reconnect_required", "user-2")):
        table(db, "connections").insert({"id": connection_id, "tenant_id": TENANT, "user_id": user, "status": status,
                                  "email": f"{user}@contoso.example", "created_at": now, "updated_at": now})
    return application


def counts(app) -> dict[str, int]:
    return row_counts(app, STATE_TABLES)


def assert_rejected(rv, app, before) -> None:
    assert 400 <= rv.status_code < 500, (rv.status_code, rv.get_data()[:300])
    assert rv.get_json()["error"]["code"]
    assert counts(app) == before


# -- strategies ---------------------------------------------------------------------------------

clean_text = st.text(max_size=30)  # hypothesis' default alphabet has no surrogates
# JSON strings may carry escaped lone surrogates ("\ud800"), which Python decodes into unencodable str.
text = clean_text | st.builds(lambda a, s, b: a + s + b, st.text(max_size=10), st.characters(categories=["Cs"]),
                              st.text(max_size=10))
ints = st.integers() | st.sampled_from([SQLITE_MAX, SQLITE_MAX + 1, -SQLITE_MAX - 2, 2**100])
scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=15)
non_strings = json_values.filter(lambda v: v is not None and not isinstance(v, str))
keys = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


def _unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_is_valid(body: object) -> bool:
    """The contract for ``POST /api/records``: a JSON object, a non-blank ``title`` of at most 500
    characters, and an optional string ``external_id`` of at most 200; both real Unicode text."""
    if not isinstance(body, dict):
        return False
    title, external_id = body.get("title"), body.get("external_id")
    return (isinstance(title, str) and bool(title.strip()) and len(title) <= 500 and _unicode(title)
            and (external_id is None or (isinstance(external_id, str) and len(external_id) <= 200
                                         and _unicode(external_id))))


record_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "title": st.one_of(text, st.text(min_size=490, max_size=510), st.sampled_from(["", "   ", "\t\n"]), non_strings),
        "external_id": st.one_of(st.none(), text, st.text(min_size=195, max_size=205), non_strings),
        "extra": json_values,
    }),
)

addresses = st.builds(lambda local, domain, pad: f"{pad}{local}@{domain}.example{pad}",
                      st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-+", min_size=1, max_size=12),
                      st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
                      st.sampled_from(["", " "]))


one_line = clean_text.filter(lambda value: "\r" not in value and "\n" not in value)  # a subject is one header line


@st.composite
def valid_sends(draw) -> dict:
    reply = draw(st.booleans())
    body = {"connection_id": ACTIVE, "body": draw(clean_text.filter(str.strip)), "reply": reply}
    to = draw(st.lists(addresses, min_size=0 if reply else 1, max_size=3))
    if to or draw(st.booleans()):
        body["to"] = to
    for field, strategy in (("cc", st.lists(addresses, max_size=3)), ("subject", st.none() | one_line),
                            ("body_type", st.sampled_from(["text", "html"])), ("automated", st.booleans())):
        if draw(st.booleans()):
            body[field] = draw(strategy)
    return body


def _bad_address(draw) -> str:
    return draw(st.sampled_from(["", "no-at-sign", "a@b", "two@@x.example", "a b@x.example", "<a@x.example>",
                                 "a@x.example,b@y.example", "x" * 250 + "@x.example"]))


@st.composite
def invalid_sends(draw) -> dict:
    """A valid send request with exactly one thing wrong with it."""
    body = draw(valid_sends())
    mutations = [
        lambda: {k: v for k, v in body.items() if k != "connection_id"},
        lambda: {**body, "connection_id": draw(st.sampled_from([True, False, "7", 7.0, None, [7]]))},
        lambda: {**body, "connection_id": draw(st.sampled_from([INACTIVE, MISSING_CONNECTION, 0, -1, SQLITE_MAX + 1,
                                                                 -2**70]))},
        lambda: {**body, "body": draw(st.sampled_from(["", "  ", None, "ok \udfff"]) | non_strings)},
        lambda: {k: v for k, v in body.items() if k != "body"},
        lambda: {**body, "body_type": draw(st.sampled_from(["markdown", "TEXT", ""]) | non_strings)},
        lambda: {**body, "reply": draw(st.sampled_from(["true", 1, 0, None, []]))},
        lambda: {**body, "automated": draw(st.sampled_from(["yes", 1, None, {}]))},
        lambda: {**body, "subject": draw(non_strings | st.text(min_size=999, max_size=1005) | st.just("\ud83d"))},
        lambda: {**body, "subject": draw(one_line) + draw(st.sampled_from(["\r\n", "\n", "\r"])) + "Bcc: x@y.example"},
        lambda: {**body, "to": [*body.get("to", []), _bad_address(draw)]},
        lambda: {**body, "cc": [_bad_address(draw)]},
        lambda: {**body, "to": draw(st.sampled_from(["a@x.example", {"a": 1}, 5]) | st.lists(non_strings, min_size=1, max_size=2))},
        lambda: {**body, "cc": draw(st.sampled_from(["a@x.example", 5, {}]))},
        lambda: {**body, "to": [f"u{n}@x.example" for n in range(101)]},
        lambda: {**body, "reply": False, "to": []},
    ]
    return draw(st.sampled_from(mutations))()


# -- POST /api/records ----------------------------------------------------------------------------

@FUZZ
@given(body=record_bodies)
def test_a_record_is_created_exactly_when_the_body_is_valid(app, client, body):
    before = counts(app)
    rv = client.post("/api/records", data=json.dumps(body), content_type="application/json", headers=AUTH)
    if record_is_valid(body):
        assert rv.status_code == 201, rv.get_data()[:300]
        created = rv.get_json()
        assert created["title"] == body["title"].strip() and created["external_id"] == body.get("external_id")
        assert counts(app) == {**before, "records": before["records"] + 1}
        assert client.get(f"/api/records/{created['id']}", headers=AUTH).get_json() == created
    else:
        assert_rejected(rv, app, before)


@FUZZ
@given(data=st.binary(max_size=200), content_type=st.sampled_from(
    ["application/json", "text/plain", "", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]),
       path=st.sampled_from(["/api/records", f"/api/records/{RECORD}/messages", f"/api/records/{MISSING_RECORD}/messages"]),
       authorized=st.booleans())
def test_raw_bodies_never_5xx_and_change_nothing_unless_accepted(app, client, data, content_type, path, authorized):
    before = counts(app)
    headers = {**(AUTH if authorized else {}), "Idempotency-Key": "raw-body"}
    rv = client.post(path, data=data, content_type=content_type, headers=headers)
    if rv.status_code in (201, 202):  # bytes that happen to be a valid JSON request
        assert authorized and "application/json" in content_type
    else:
        assert_rejected(rv, app, before)


# -- POST /api/records/{id}/messages ----------------------------------------------------------------

@FUZZ
@given(body=valid_sends())
def test_a_valid_send_is_queued_once_with_its_job(app, client, body):
    key = fresh_key()
    before = counts(app)
    rv = client.post(f"/api/records/{RECORD}/messages", json=body, headers={**AUTH, "Idempotency-Key": key})
    assert rv.status_code == 202, rv.get_data()[:300]
    queued = rv.get_json()
    assert queued["status"] == "queued"
    assert counts(app) == {**before, "outbox": before["outbox"] + 1, "jobs": before["jobs"] + 1}
    outbox = client.get(f"/api/outbox/{queued['id']}", headers=AUTH).get_json()
    assert outbox["to"] == [a.strip() for a in body.get("to", [])]
    assert outbox["cc"] == [a.strip() for a in body.get("cc", [])]
    assert outbox["reply"] is body["reply"] and outbox["automated"] is body.get("automated", False)

    again = client.post(f"/api/records/{RECORD}/messages", json=body, headers={**AUTH, "Idempotency-Key": key})
    assert again.status_code == 202 and again.get_json()["id"] == queued["id"]
    assert counts(app) == {**before, "outbox": before["outbox"] + 1, "jobs": before["jobs"] + 1}


@FUZZ
@given(first=valid_sends(), second=valid_sends())
def test_a_key_reused_for_a_different_request_is_refused_without_change(app, client, first, second):
    key = fresh_key()
    assume(json.dumps(first, sort_keys=True) != json.dumps(second, sort_keys=True))
    assert client.post(f"/api/records/{RECORD}/messages", json=first,
                       headers={**AUTH, "Idempotency-Key": key}).status_code == 202
    before = counts(app)
    rv = client.post(f"/api/records/{RECORD}/messages", json=second, headers={**AUTH, "Idempotency-Key": key})
    if rv.status_code == 202:  # the two bodies normalise to the same request (padding, defaults)
        return
    assert rv.status_code == 409 and rv.get_json()["error"]["code"] == "idempotency_key_reused"
    assert counts(app) == before


@FUZZ
@given(body=invalid_sends())
def test_an_invalid_send_is_refused_and_changes_nothing(app, client, body):
    key = fresh_key()
    before = counts(app)
    rv = client.post(f"/api/records/{RECORD}/messages", data=json.dumps(body), content_type="application/json",
                     headers={**AUTH, "Idempotency-Key": key})
    assert_rejected(rv, app, before)
    assert rv.status_code in (409, 422)


@FUZZ
@given(body=valid_sends() | json_values, key=st.one_of(keys, st.sampled_from(["", "   ", "k" * 201])),
       record=st.sampled_from([RECORD, MISSING_RECORD]))
def test_any_send_body_key_and_record_never_5xx(app, client, body, key, record):
    before = counts(app)
    rv = client.post(f"/api/records/{record}/messages", data=json.dumps(body), content_type="application/json",
                     headers={**AUTH, "Idempotency-Key": key})
    if rv.status_code == 202:
        assert record == RECORD and 0 < len(key.strip()) <= 200
        after = counts(app)
        assert after == before or after == {**before, "outbox": before["outbox"] + 1, "jobs": before["jobs"] + 1}
    else:
        assert_rejected(rv, app, before)
        if not key.strip() or len(key.strip()) > 200:
            assert rv.status_code == 400
        elif record == MISSING_RECORD:
            assert rv.status_code == 404


# -- regressions: crashes fuzzing found (500s before the fix) -----------------------------------

def test_deeply_nested_json_is_a_400(app, client):
    before = counts(app)
    rv = client.post("/api/records", data="[" * 100_000, content_type="application/json", headers=AUTH)
    assert_rejected(rv, app, before)


@pytest.mark.parametrize("body", [{"title": "\ud800"}, {"title": "ok", "external_id": "x\udfff"}])
def test_a_lone_surrogate_in_a_field_is_a_422(app, client, body):
    before = counts(app)
    rv = client.post("/api/records", data=json.dumps(body), content_type="application/json", headers=AUTH)
    assert_rejected(rv, app, before)


@pytest.mark.parametrize("method, path, body", [
    ("get", f"/api/records/{2**63}", None),
    ("get", f"/api/records/{2**64}/thread", None),
    ("post", f"/api/records/{2**63}/emails", None),
    ("post", f"/api/records/{2**70}/messages", {"connection_id": ACTIVE, "to": ["a@x.example"], "body": "x"}),
    ("get", f"/api/outbox/{2**63}", None),
    ("get", f"/api/connections/{2**63}", None),
    ("delete", f"/api/connections/{2**64}", None),
    ("post", f"/api/records/{RECORD}/messages", {"connection_id": 2**63, "to": ["a@x.example"], "body": "x"}),
    ("post", f"/api/records/{RECORD}/messages", {"connection_id": -2**63 - 1, "to": ["a@x.example"], "body": "x"}),
])
def test_ids_beyond_64_bits_are_a_4xx(app, client, method, path, body):
    before = counts(app)
    kwargs = {"json": body} if body is not None else {"data": b"x", "content_type": "message/rfc822"}
    rv = getattr(client, method)(path, headers={**AUTH, "Idempotency-Key": "big-ids"}, **kwargs)
    assert_rejected(rv, app, before)


@pytest.mark.parametrize("id_", ["0", str(2**63), str(2**64), "9300000000000000000", "0007"])
@pytest.mark.parametrize("method", ["get", "delete"])
def test_an_id_that_cannot_name_a_row_is_404_whatever_the_method(client, method, id_):
    """Not 405: Werkzeug would report the GET route's pattern as matched for a DELETE whose id failed."""
    rv = getattr(client, method)(f"/api/connections/{id_}", headers=AUTH)
    assert rv.status_code == 404 and rv.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("field", ["to", "cc"])
def test_an_address_with_a_lone_surrogate_is_a_422(app, client, field):
    body = {"connection_id": ACTIVE, "to": ["a@x.example"], "body": "hello", field: ["b\udc80@x.example"]}
    before = counts(app)
    rv = client.post(f"/api/records/{RECORD}/messages", data=json.dumps(body), content_type="application/json",
                     headers={**AUTH, "Idempotency-Key": fresh_key()})
    assert_rejected(rv, app, before)
    sign_in_person(client)
    assert client.get(f"/records/{RECORD}").status_code == 200
