"""The control page as a demo tool: names instead of ids, mailboxes and their messages, replying to a message,
approval requests, the faults in force with one reset, and forms that only the page itself can submit."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
import requests

from emulator.control_page import PAGE_SIZE

REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"


class _Forms(HTMLParser):
    """Each ``<form method="post">`` of a page as (action, {field: value}), as a browser would submit it."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a["action"], {}))
        elif not self.forms:
            return
        fields = self.forms[-1][1]
        if tag == "input" and a.get("type") != "checkbox" or tag == "input" and "checked" in a:
            fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and (self._select not in fields or "selected" in a):
            fields[self._select] = a["value"]
        elif tag == "textarea":
            self._textarea = a["name"]
            fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.forms[-1][1][self._textarea] += data


def forms(page: str, action: str) -> list[dict[str, str]]:
    parser = _Forms()
    parser.feed(page)
    return [fields for found, fields in parser.forms if found == action]


def visible_text(page: str, table: str) -> str:
    """What a reader sees of the table labelled ``table``: its text, no attributes (where ids may sit)."""
    body = re.search(rf'aria-labelledby="{table}">(.*?)</(?:table|ul)>', page, re.S).group(1)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture
def demo(emulator):
    return emulator.seed_demo(REDIRECT_URI)


@pytest.fixture
def browser(emulator):
    """GETs and form POSTs as the control page's own forms send them (same origin, no redirects followed)."""
    class Browser:
        def get(self, path: str) -> requests.Response:
            return requests.get(f"{emulator.base_url}{path}", verify=emulator.ca_file, timeout=5)

        def submit(self, path: str, fields: dict[str, str], **headers: str) -> requests.Response:
            return requests.post(f"{emulator.base_url}{path}", data=fields, verify=emulator.ca_file, timeout=5,
                                 allow_redirects=False, headers={"Origin": emulator.base_url, **headers})

        def submit_form(self, page_path: str, action: str, index: int = 0, **changes: str) -> requests.Response:
            fields = forms(self.get(page_path).text, action)[index]
            return self.submit(action, {**fields, **changes})
    return Browser()


def test_tenants_users_and_approval_requests_are_shown_by_name(emulator, demo, browser):
    alex, fabrikam = demo["users"]["alex"], demo["tenants"]["fabrikam"]
    emulator.directory.request_approval(fabrikam, alex, demo["client_id"], frozenset({"Mail.Send"}), "vendor files")

    page = browser.get("/_emulator/").text

    approvals = visible_text(page, "approvals")
    assert "Alex Wilber <alex@fabrikam.example>" in approvals and "Fabrikam" in approvals
    assert "Outlook Integration" in approvals and "vendor files" in approvals
    assert alex not in approvals and fabrikam not in approvals and demo["client_id"] not in approvals
    contoso = visible_text(page, "tenant-1")
    assert "Megan Bowen <megan@contoso.example>" in contoso and "Inbox (0)" in contoso
    assert "<script" not in page


def test_the_mailbox_view_lists_messages_newest_first_with_their_message_ids(emulator, demo, browser):
    megan = demo["users"]["megan"]
    first = emulator.deliver_email(megan, subject="Invoice <7>", body="", sender="Dana <dana@acme.example>",
                                   to=["megan@contoso.example"], internet_message_id="<first@acme.example>")
    emulator.clock.advance(60)
    emulator.deliver_email(megan, subject="Invoice 8", body="", sender="dana@acme.example",
                           to=["megan@contoso.example"], internet_message_id="<second@acme.example>")

    page = browser.get(f"/_emulator/mailboxes/{megan}").text

    messages = visible_text(page, "messages")
    assert messages.index("<second@acme.example>") < messages.index("Invoice <7>") < messages.index(
        "<first@acme.example>")
    assert "Dana <dana@acme.example>" in messages and "Showing 1–2 of 2" in page
    assert f'title="{first["conversationId"]}"' in page  # shortened, the whole id on hover
    assert "Inbox (2)" in visible_text(browser.get("/_emulator/").text, "tenant-1")


def test_a_long_folder_is_shown_a_page_at_a_time(emulator, demo, browser):
    megan = demo["users"]["megan"]
    for n in range(PAGE_SIZE + 1):
        emulator.clock.advance(1)
        emulator.deliver_email(megan, subject=f"Note {n}", body="", sender="dana@acme.example", to=[])

    newest = browser.get(f"/_emulator/mailboxes/{megan}?folder=inbox").text
    oldest = browser.get(f"/_emulator/mailboxes/{megan}?folder=inbox&page=2").text

    assert f"Showing 1–{PAGE_SIZE} of {PAGE_SIZE + 1}" in newest and ">Older</a>" in newest
    assert "Note 0<" not in newest and f"Note {PAGE_SIZE}<" in newest
    assert f"Showing {PAGE_SIZE + 1}–{PAGE_SIZE + 1} of {PAGE_SIZE + 1}" in oldest and "Note 0<" in oldest


def test_reply_to_this_message_threads_the_reply_and_notifies_subscribers(emulator, alice, receiver, browser):
    original = emulator.deliver_email(alice.id, subject="Onboarding", body="W-9 attached",
                                      sender="Dana Whitfield <dana@acme.example>", to=[alice.email],
                                      internet_message_id="<2@acme.example>", references=["<1@acme.example>"])
    expires = (emulator.clock.now() + timedelta(hours=1)).isoformat()
    assert alice.post("/subscriptions", json={"changeType": "created", "notificationUrl": receiver.url,
                                              "resource": "/me/messages", "expirationDateTime": expires}).ok
    mailbox = browser.get(f"/_emulator/mailboxes/{alice.id}").text
    reply_path = re.search(r'href="([^"]+/reply)">Reply to this message', mailbox).group(1)

    fields = forms(browser.get(reply_path).text, "/_emulator/messages")[0]
    response = browser.submit("/_emulator/messages", {**fields, "body": "Thanks, received."})

    assert (fields["from"], fields["to"], fields["subject"], fields["user_id"]) == (
        "Dana Whitfield <dana@acme.example>", alice.email, "RE: Onboarding", alice.id)
    assert response.status_code == 303 and response.headers["Location"].startswith(
        f"/_emulator/mailboxes/{alice.id}?folder=inbox&done=")
    reply = emulator.mail.messages(alice.id)[0]
    headers = {h["name"]: h["value"] for h in reply["internetMessageHeaders"]}
    assert headers["In-Reply-To"] == "<2@acme.example>"
    assert headers["References"] == "<1@acme.example> <2@acme.example>"
    assert reply["conversationId"] == original["conversationId"] and reply["from"]["emailAddress"] == {
        "name": "Dana Whitfield", "address": "dana@acme.example"}
    [notification] = receiver.wait_for(1)
    assert notification["changeType"] == "created" and notification["resourceData"]["id"] in (
        reply["id"], reply["@emulator.immutableId"])


def test_a_reply_to_a_sent_message_comes_from_its_recipient(emulator, demo, browser):
    megan = demo["users"]["megan"]
    emulator.deliver_email(megan, subject="RE: Quote", body="", sender="megan@contoso.example",
                           to=["Dana <dana@acme.example>"], folder="sentitems")
    sent = emulator.mail.messages(megan, "sentitems")[0]

    fields = forms(browser.get(f"/_emulator/mailboxes/{megan}/messages/{sent['id']}/reply").text,
                   "/_emulator/messages")[0]

    assert (fields["from"], fields["subject"]) == ("Dana <dana@acme.example>", "RE: Quote")


def test_a_new_message_delivered_from_the_mailbox_view_lands_there(emulator, demo, browser):
    megan = demo["users"]["megan"]
    path = f"/_emulator/mailboxes/{megan}"

    response = browser.submit_form(path, "/_emulator/messages", **{"from": "dana@acme.example", "subject": "Hi"})

    assert response.status_code == 303
    assert "Hi" in visible_text(browser.get(response.headers["Location"]).text, "messages")
    assert [m["subject"] for m in emulator.mail.messages(megan)] == ["Hi"]


def test_the_faults_in_force_are_listed_in_words_and_reset_at_once(emulator, demo, browser):
    emulator.add_graph_fault(503, path="/messages", nth=2, retry_after=7)
    emulator.set_graph_latency((5, 10))
    emulator.fail_next_refresh(50173, user_id=demo["users"]["megan"], count=2)
    emulator.fail_token_endpoint(429, retry_after=3)
    emulator.set_graph_limits(concurrency_limit=1)
    emulator.configure_delivery(drop_rate=0.5)

    faults = visible_text(browser.get("/_emulator/").text, "faults")
    response = browser.submit_form("/_emulator/", "/_emulator/faults/reset")

    assert "Graph answers 503 with Retry-After 7 s to the 2nd call whose path matches '/messages'" in faults
    assert "Every Graph call waits between 5 and 10 ms." in faults
    assert "The next 2 refreshes fail (of Megan Bowen <megan@contoso.example>) with AADSTS50173 (invalid_grant)." in faults
    assert "The next token request gets HTTP 429 with Retry-After 3 s." in faults
    assert "Graph throttling: concurrency limit is 1 (default 4)." in faults
    assert "Notification delivery: drop rate is 0.5 (default 0.0)." in faults
    assert response.status_code == 303
    assert "None: every call is answered normally." in browser.get(response.headers["Location"]).text
    assert emulator.faults.rules == [] and emulator.faults.latency == (0.0, 0.0)
    assert emulator.directory.injected.queued() == [] and emulator.faults.concurrency_limit == 4
    assert emulator.configure_delivery()["drop_rate"] == 0.0


@pytest.mark.parametrize("decision, status", [("approve", "approved"), ("deny", "denied")])
def test_an_approval_request_is_approved_or_denied_from_the_page(emulator, demo, browser, decision, status):
    fabrikam, client_id = demo["tenants"]["fabrikam"], demo["client_id"]
    request = emulator.directory.request_approval(fabrikam, demo["users"]["alex"], client_id,
                                                  frozenset({"Mail.Send"}), "")

    response = browser.submit_form("/_emulator/", f"/_emulator/approvals/{request.id}/{decision}")

    assert response.status_code == 303 and request.status == status
    assert status in visible_text(browser.get("/_emulator/").text, "approvals")
    assert bool(emulator.directory.granted_scopes(fabrikam, demo["users"]["alex"], client_id)) == (
        decision == "approve")


def test_only_a_pending_request_can_be_denied(emulator, demo, browser):
    request = emulator.directory.request_approval(demo["tenants"]["fabrikam"], demo["users"]["alex"],
                                                  demo["client_id"], frozenset({"Mail.Send"}), "")
    emulator.approve_request(request.id)

    response = requests.post(f"{emulator.base_url}/_emulator/approvals/{request.id}/deny", verify=emulator.ca_file,
                             timeout=5)

    assert response.status_code == 400 and request.status == "approved"


@pytest.mark.parametrize("token, headers", [
    (None, {}),                                                      # a form without the page's token
    ("forged", {}),
    ("valid", {"Origin": "https://evil.example"}),                   # another origin, even with the token
    ("valid", {"Sec-Fetch-Site": "cross-site"}),
])
def test_a_form_from_elsewhere_is_refused(emulator, browser, token, headers):
    fields = forms(browser.get("/_emulator/").text, "/_emulator/tenants")[0]
    fields = {**fields, "name": "Evil"} | ({"csrf_token": token} if token != "valid" else {})
    if token is None:
        del fields["csrf_token"]

    response = browser.submit("/_emulator/tenants", fields, **headers)

    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert emulator.directory.tenants() == []


def test_a_script_from_another_origin_cannot_change_the_emulator(emulator):
    response = requests.post(f"{emulator.base_url}/_emulator/faults/reset", verify=emulator.ca_file, timeout=5,
                             headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})

    assert response.status_code == 403


def test_a_form_comes_back_only_to_a_control_page(emulator, browser):
    fields = forms(browser.get("/_emulator/").text, "/_emulator/tenants")[0]

    response = browser.submit("/_emulator/tenants", {**fields, "name": "Woodgrove", "next": "https://evil.example/"})

    assert response.status_code == 303 and response.headers["Location"].startswith("/_emulator/?done=")
