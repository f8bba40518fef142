"""End-to-end fixtures: the emulator and the service as real HTTP servers on loopback."""

from __future__ import annotations

import pytest

from app.core.db import store_location, thread_db
from tests.e2e.harness import Browser, PlatformApi, ServiceServer
from tests.e2e.mail import MEGAN, VENDOR, linked_copies, thread, upload
from tests.e2e.waiting import wait_for


@pytest.fixture
def service(emulator, app_config):
    server = ServiceServer(emulator, app_config).start()
    yield server
    server.stop()


@pytest.fixture
def browser(service) -> Browser:
    return Browser(service)


@pytest.fixture
def api(service) -> PlatformApi:
    """The records platform calling the service's API over HTTP."""
    return PlatformApi(service)


@pytest.fixture
def megan(service):
    return service.demo["users"]["megan"]


@pytest.fixture
def connected(service, browser, api, megan):
    """A record with an uploaded email that also sits in Megan's inbox, and Megan connected."""
    record = api.create_record()
    first = service.emulator.deliver_email(megan, subject="Onboarding documents", body="Attached are our W-9...",
                                           sender=VENDOR, to=[MEGAN], internet_message_id="<first.1@acme.example>")
    upload(api, record["id"])
    browser.connect(record["id"], "megan")
    db = thread_db(store_location(service.app.config))
    wait_for(lambda: list(db.query("SELECT 1 FROM subscriptions WHERE status = 'active'")), message="subscription")
    wait_for(lambda: thread(api, record["id"])[0]["source"] == "upload" and linked_copies(db), message="backfill")
    return {"record": record, "first": first, "db": db}
