"""The record page keeps itself current and shows mail safely: a new reply appears on the open page
without a reload, an HTML body renders in its sandbox with no script run and its inline image shown,
and an attachment downloads."""

from __future__ import annotations

import struct
import time
import zlib
from email.message import EmailMessage

from playwright.sync_api import expect

from tests.browser.test_pages import FIRST_ID, MEGAN, VENDOR, db, megan, record, wait_until_subscribed  # noqa: F401
from tests.browser.walks import connect_in_browser, sign_in_in_browser
from tests.e2e.mail import wait_for_thread

PDF = b"%PDF-1.4\n% W-9 for the vendor file\n%%EOF\n"


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (the browser must decode it), red pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def upload_html(api, record_id: int) -> None:
    email = EmailMessage()
    email["From"], email["To"] = f"{VENDOR['name']} <{VENDOR['address']}>", MEGAN
    email["Subject"], email["Message-ID"] = "Signed W-9", "<signed.9@acme.example>"
    email.set_content('<p>Please find the signed W-9 attached.</p><img src="cid:logo@acme">'
                      '<script>window.top.document.title = "pwned"</script>'
                      '<img src="x" onerror="window.top.document.title = \'pwned\'">'
                      '<blockquote><p>Earlier: please send it signed.</p></blockquote>', subtype="html")
    email.add_related(png(), maintype="image", subtype="png", cid="<logo@acme>")
    email.add_attachment(PDF, maintype="application", subtype="pdf", filename="W-9 signed.pdf")
    rv = api.post(f"/api/records/{record_id}/emails", data=bytes(email), headers={"Content-Type": "message/rfc822"})
    assert rv.status_code == 201, rv.text


def test_a_new_reply_appears_on_the_open_page_within_two_seconds(page, service, api, record, db, megan):
    connect_in_browser(page, record["id"])
    wait_until_subscribed(db)
    conversation = page.get_by_role("region", name="Conversation")
    expect(conversation.get_by_role("listitem")).to_have_count(1)
    compose = page.get_by_role("region", name="Write an email")
    compose.get_by_label("Message", exact=True).fill("Half-written reply")  # survives the page's updates
    service.emulator.deliver_email(megan, subject="RE: Onboarding documents", body="The banking form, signed.",
                                   sender=VENDOR, to=[MEGAN], in_reply_to=FIRST_ID, references=[FIRST_ID],
                                   internet_message_id="<reply.live@acme.example>")
    wait_for_thread(api, record["id"], 2)
    linked = time.monotonic()
    expect(conversation.get_by_role("listitem").filter(has_text="The banking form, signed.")).to_be_visible(
        timeout=2000)
    assert time.monotonic() - linked < 2.0
    expect(compose.get_by_label("Message", exact=True)).to_have_value("Half-written reply")


def test_an_html_body_renders_sandboxed_with_no_script_run_and_its_inline_image_shown(page, service, api, record):
    upload_html(api, record["id"])
    sign_in_in_browser(page, record["id"])
    title = page.title()
    frame = page.frame_locator("iframe.body")
    expect(frame.get_by_text("Please find the signed W-9 attached.")).to_be_visible()
    expect(frame.locator("details.quoted summary")).to_have_text("Quoted text")
    expect(frame.get_by_text("Earlier: please send it signed.")).to_be_hidden()  # folded
    logo = frame.locator("img").first  # the sanitizer keeps no ids; the cid image comes first
    expect(logo).to_be_visible()
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 3
    page.wait_for_timeout(300)
    assert page.title() == title and "pwned" not in page.title()
    assert page.locator("iframe.body").get_attribute("sandbox") == (
        "allow-same-origin allow-popups allow-popups-to-escape-sandbox")


def test_an_attachment_downloads_from_the_record_page(page, service, api, record):
    upload_html(api, record["id"])
    sign_in_in_browser(page, record["id"])
    link = page.get_by_role("link", name="W-9 signed.pdf")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "W-9 signed.pdf"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == PDF
