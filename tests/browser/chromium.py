"""Debian's Chromium for the browser tests: found at ``/usr/bin/chromium``, or installed with apt-get.

The tests never download a browser build (Playwright's own ``playwright install`` is not used).
On a fresh machine the first browser test installs the ``chromium`` package once, which needs
root and apt-get; where that is impossible the browser tests fail with a message saying how to
install it, rather than being skipped. ``python -m tests.browser.chromium`` does the same by hand.
"""

from __future__ import annotations

from pathlib import Path

from tests.debian import PackageUnavailable, ensure_package

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ChromiumUnavailable(PackageUnavailable):
    """Chromium is not installed and could not be installed with apt-get."""


def ensure_chromium() -> Path:
    """The Chromium executable, installing Debian's package first when it is missing."""
    return ensure_package("chromium", lambda: CHROMIUM if CHROMIUM.exists() else None, ChromiumUnavailable)


if __name__ == "__main__":
    print(ensure_chromium())
