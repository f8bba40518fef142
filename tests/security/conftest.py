"""Fixtures for the hardening tests: enough open files for this process to hold a connection flood."""

from __future__ import annotations

import resource

import pytest


@pytest.fixture
def open_files():
    """Raise this process's soft open-file limit to ``needed`` (call it); restored afterwards.

    Skips the test when the hard limit is too low to hold the flood at all.
    """
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)

    def raise_to(needed: int) -> None:
        hard = saved[1]
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the hard open-file limit ({hard}) is below the {needed} files this test holds; "
                        f"raise it (ulimit -Hn) to run it")
        if saved[0] != resource.RLIM_INFINITY and saved[0] < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))

    yield raise_to
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)
