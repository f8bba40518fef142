"""Browser fixtures: one Debian Chromium per test session driven by Playwright, the service and the
emulator per test (as in ``tests/e2e``), and a fresh browser context per test.

The emulator serves HTTPS with a CA made at its start, which Chromium does not trust. The context
therefore ignores certificate errors, and a route guard aborts (and the test then fails on) any
HTTPS request to another origin than the emulator's: the only HTTPS the tests may reach is the
emulator's. The service itself is plain HTTP on loopback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.chromium import ARGS, ChromiumUnavailable, ensure_chromium
from tests.e2e.conftest import api, service  # noqa: F401  (fixtures shared with the e2e tests)

TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    try:
        return ensure_chromium()
    except ChromiumUnavailable as e:
        pytest.fail(f"The browser tests need Debian's chromium: {e}", pytrace=False)


@pytest.fixture(scope="package")
def chromium(chromium_executable) -> Browser:
    """One browser for all browser tests (closed after the last); each test gets its own context."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_executable), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(chromium, service, emulator) -> BrowserContext:
    blocked: list[str] = []

    def outside_emulator(url: str) -> bool:
        return url.startswith("https://") and not url.startswith(emulator.base_url + "/")

    def abort(route):
        blocked.append(route.request.url)
        route.abort()

    ctx = chromium.new_context(base_url=service.base_url, ignore_https_errors=True, locale="en-US",
                               viewport={"width": 1100, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.route(outside_emulator, abort)
    yield ctx
    ctx.close()
    assert not blocked, f"HTTPS requests outside the emulator were blocked: {blocked}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(context, request, tmp_path) -> Page:
    """A page that fails the test if anything on it breaks the service's Content-Security-Policy."""
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"Screenshot of the failed page: {shot} (at {page.url})")
    assert not violations, f"the page broke the Content-Security-Policy: {violations}"


def snapshot(page: Page, name: str) -> None:
    """Save a full-page screenshot to ``$BROWSER_SCREENSHOTS/{name}.png`` when that variable is set."""
    folder = os.environ.get("BROWSER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
