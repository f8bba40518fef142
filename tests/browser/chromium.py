"""Debian's Chromium for the browser tests: found at ``/usr/bin/chromium``, or installed with apt-get.

The tests never download a browser build (Playwright's own ``playwright install`` is not used).
On a fresh machine the first browser test installs the ``chromium`` package once, which needs
root and apt-get; where that is impossible the browser tests fail with a message saying how to
install it, rather than being skipped. ``python -m tests.browser.chromium`` does the same by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
APT_TIMEOUT = 900  # seconds; a fresh install fetches about 120 packages
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed and could not be installed with apt-get."""


def _apt_get(*args: str) -> None:
    command = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise ChromiumUnavailable(f"`{' '.join(command)}` did not finish within {APT_TIMEOUT} s") from e
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ChromiumUnavailable(f"`{' '.join(command)}` failed with exit code {done.returncode}:\n{tail}")


def ensure_chromium() -> Path:
    """The Chromium executable, installing Debian's package first when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    how = "Install it with: apt-get update && apt-get install -y chromium"
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and this machine has no apt-get. {how}")
    if os.geteuid() != 0:
        raise ChromiumUnavailable(f"{CHROMIUM} is missing and installing it needs root. {how}")
    print("Installing Debian's chromium with apt-get (once per machine) ...", file=sys.stderr, flush=True)
    _apt_get("update")
    _apt_get("install", "-y", "chromium")
    if not CHROMIUM.exists():
        raise ChromiumUnavailable(f"apt-get installed chromium but {CHROMIUM} does not exist. {how}")
    return CHROMIUM


if __name__ == "__main__":
    print(ensure_chromium())
