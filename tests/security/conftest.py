"""Fixtures for the hardening tests: the service and the emulator on loopback, as in the e2e tests."""

from __future__ import annotations

from tests.e2e.conftest import api, browser, service  # noqa: F401  (fixtures shared with the e2e tests)
