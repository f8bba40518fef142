"""Folder delta: paging, deltaLink rounds, @removed, changeType, and 410 syncStateNotFound."""

from __future__ import annotations

from datetime import timedelta

INBOX_DELTA = "/me/mailFolders('inbox')/messages/delta"


def deliver(emulator, user, subject="Hello", **fields):
    return emulator.mail.deliver(user.id, subject=subject, body="text", sender="carol@customer.example",
                                 to=[user.email], **fields)


def round_of(user, url, **headers):
    """Follow nextLinks to the deltaLink; returns (items, deltaLink, pages)."""
    items, pages = [], 0
    while True:
        rv = user.session.get(url, headers=headers)
        assert rv.status_code == 200, rv.text
        page = rv.json()
        items += page["value"]
        pages += 1
        if "@odata.deltaLink" in page:
            return items, page["@odata.deltaLink"], pages
        url = page["@odata.nextLink"]


def test_initial_round_pages_then_returns_a_delta_link(emulator, alice):
    for n in range(7):
        deliver(emulator, alice, f"Message {n}")
    first = alice.get(INBOX_DELTA, params={"$select": "subject"}, headers={"Prefer": "odata.maxpagesize=3"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=3"
    assert len(first.json()["value"]) == 3 and "$skiptoken=" in first.json()["@odata.nextLink"]
    items, delta_link, pages = round_of(alice, first.json()["@odata.nextLink"], Prefer="odata.maxpagesize=3")
    assert pages == 2 and len(items) == 4
    assert "$deltatoken=" in delta_link
    assert set(first.json()["value"][0]) == {"@odata.type", "@odata.etag", "id", "subject"}
    again, _, _ = round_of(alice, delta_link)
    assert again == []


def test_next_round_reports_changes_and_removals(emulator, alice):
    kept = deliver(emulator, alice, "Kept")
    moved = deliver(emulator, alice, "Moved")
    trashed = deliver(emulator, alice, "Trashed")
    _, delta_link, _ = round_of(alice, alice.root + INBOX_DELTA)
    new = deliver(emulator, alice, "New")
    emulator.mail.update(alice.id, kept["id"], {"isRead": True})
    emulator.mail.move(alice.id, moved["id"], "archive")
    emulator.mail.delete(alice.id, trashed["id"])
    items, next_link, _ = round_of(alice, delta_link)
    by_id = {item["id"]: item for item in items}
    assert by_id[new["id"]]["subject"] == "New"
    assert by_id[kept["id"]]["isRead"] is True
    assert by_id[moved["id"]]["@removed"] == {"reason": "changed"}
    assert by_id[trashed["id"]]["@removed"] == {"reason": "changed"}
    assert len(items) == 4

    trash_link = round_of(alice, alice.root + "/me/mailFolders/deleteditems/messages/delta")[1]
    gone = emulator.mail.get(alice.id, trashed["@emulator.immutableId"])["id"]
    emulator.mail.delete(alice.id, gone)
    [removed], _, _ = round_of(alice, trash_link)
    assert removed == {"@odata.type": "#microsoft.graph.message", "id": gone, "@removed": {"reason": "deleted"}}


def test_immutable_ids_and_change_type_filter(emulator, alice):
    first = deliver(emulator, alice, "First")
    _, delta_link, _ = round_of(alice, alice.root + INBOX_DELTA + "?changeType=created",
                                Prefer='IdType="ImmutableId"')
    emulator.mail.update(alice.id, first["id"], {"isRead": True})
    second = deliver(emulator, alice, "Second")
    items, _, _ = round_of(alice, delta_link, Prefer='IdType="ImmutableId"')
    assert [i["id"] for i in items] == [second["@emulator.immutableId"]]


def test_received_filter_on_the_initial_round(emulator, alice):
    deliver(emulator, alice, "Old", received_at=emulator.clock.now() - timedelta(days=30))
    deliver(emulator, alice, "Recent")
    since = (emulator.clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    items, _, _ = round_of(alice, f"{alice.root}{INBOX_DELTA}?$filter=receivedDateTime ge {since}")
    assert [i["subject"] for i in items] == ["Recent"]
    assert alice.get(INBOX_DELTA, params={"$filter": "subject eq 'x'"}).status_code == 400


def test_unknown_or_invalidated_tokens_are_410(emulator, alice):
    deliver(emulator, alice)
    _, delta_link, _ = round_of(alice, alice.root + INBOX_DELTA)
    rv = alice.get(INBOX_DELTA, params={"$deltatoken": "made-up"})
    assert rv.status_code == 410 and rv.json()["error"]["code"] == "syncStateNotFound"
    assert alice.session.get(delta_link).status_code == 200
    emulator.mail.invalidate_sync_state(alice.id)
    rv = alice.session.get(delta_link)
    assert rv.status_code == 410
    restart = rv.headers["Location"]
    assert restart.endswith("?$deltatoken=")
    items, _, _ = round_of(alice, restart)
    assert len(items) == 1


def test_delta_needs_a_folder(alice):
    rv = alice.get("/me/messages/delta")
    assert rv.status_code == 400


def test_delta_as_an_odata_function_call_with_parentheses(emulator, alice):
    """The SDK's builders call ``.../messages/delta()``; its links keep working to the deltaLink."""
    deliver(emulator, alice, "One")
    items, delta_link, _ = round_of(alice, alice.root + INBOX_DELTA + "()")
    assert [m["subject"] for m in items] == ["One"]
    deliver(emulator, alice, "Two")
    assert [m["subject"] for m in round_of(alice, delta_link)[0]] == ["Two"]
    assert alice.get("/me/messages()").status_code == 200
