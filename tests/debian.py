"""Debian packages the tests need (Chromium, PostgreSQL): used where installed, else installed once with
apt-get, else a failure that says how to install them. Never skipped, never downloaded from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

APT_TIMEOUT = 900  # seconds; a fresh install of chromium fetches about 120 packages


class PackageUnavailable(RuntimeError):
    """A Debian package the tests need is missing and could not be installed with apt-get."""


def ensure_package(package: str, find: Callable[[], Path | None],
                   error: type[PackageUnavailable] = PackageUnavailable) -> Path:
    """What ``find`` returns, after installing ``package`` with apt-get when it returns None."""
    found = find()
    if found is not None:
        return found
    how = f"Install it with: apt-get update && apt-get install -y {package}"
    if shutil.which("apt-get") is None:
        raise error(f"{package} is missing and this machine has no apt-get. {how}")
    if os.geteuid() != 0:
        raise error(f"{package} is missing and installing it needs root. {how}")
    print(f"Installing Debian's {package} with apt-get (once per machine) ...", file=sys.stderr, flush=True)
    _apt_get(error, "update")
    _apt_get(error, "install", "-y", package)
    found = find()
    if found is None:
        raise error(f"apt-get installed {package} but the tests still cannot find it. {how}")
    return found


def _apt_get(error: type[PackageUnavailable], *args: str) -> None:
    command = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise error(f"`{' '.join(command)}` did not finish within {APT_TIMEOUT} s") from e
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise error(f"`{' '.join(command)}` failed with exit code {done.returncode}:\n{tail}")
