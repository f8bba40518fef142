"""Fault injection and Outlook's throttling for Graph calls.

Throttling is per app and mailbox, as Outlook's is: at most ``concurrency_limit`` requests in flight
(429 ``ApplicationThrottled``, "MailboxConcurrency"), at most ``rate_limit`` requests per
``rate_window`` seconds, and, like Dev Proxy's RetryAfter plugin, a client that calls the same
throttle key again before its ``Retry-After`` has passed gets another 429. Injected rules add 429
and 5xx answers (by method, path pattern, rate or "the nth call") and latency. Time-based decisions
ask the shared clock; being in flight is real.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from emulator.clock import Clock
from emulator.errors import GraphError

_ERRORS = {
    429: ("TooManyRequests", "Too many requests. Please retry after the time in the Retry-After header."),
    500: ("generalException", "An internal server error occurred."),
    502: ("BadGateway", "The server received an invalid response from an upstream server."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The upstream server did not respond in time."),
}

LIMITS = ("concurrency_limit", "rate_limit", "rate_window", "concurrency_retry_after", "retry_after_penalty")
"""The throttling settings :meth:`Faults.set_limits` changes (and :meth:`Faults.clear` keeps)."""


@dataclass
class FaultRule:
    """Fail matching calls with ``status``: every one (``rate`` 1), a random share, or only the ``nth``.

    ``path`` is a regular expression searched in the path after ``/v1.0`` (``/me/messages/...``);
    ``times`` caps how often the rule fires. ``retry_after`` goes out with 429 and 503.
    """

    status: int
    rate: float = 1.0
    path: str | None = None
    method: str | None = None
    nth: int | None = None
    times: int | None = None
    retry_after: int = 5
    calls: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.status not in _ERRORS:
            raise ValueError(f"fault status must be one of {sorted(_ERRORS)}, not {self.status}")
        self._pattern = re.compile(self.path, re.IGNORECASE) if self.path else None

    def applies(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            self._pattern is None or bool(self._pattern.search(path)))


class Faults:
    def __init__(self, clock: Clock, *, concurrency_limit: int = 4, rate_limit: int = 10_000,
                 rate_window: float = 600.0, concurrency_retry_after: int = 1, retry_after_penalty: bool = True,
                 seed: int | None = None) -> None:
        self.clock = clock
        self.concurrency_limit = concurrency_limit
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.concurrency_retry_after = concurrency_retry_after
        self.retry_after_penalty = retry_after_penalty
        #: The limits this emulator started with: what the control page's "reset all faults" restores.
        self.initial_limits = {name: getattr(self, name) for name in LIMITS}
        self.latency: tuple[float, float] = (0.0, 0.0)
        self.rules: list[FaultRule] = []
        #: Highest number of requests seen in flight at once, per (app id, throttle key).
        self.peak_in_flight: dict[tuple[str, str], int] = {}
        #: How many 429s were answered, per reason: penalty, concurrency, rate, injected.
        self.throttled: dict[str, int] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], int] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}
        self._windows: dict[tuple[str, str], list[float]] = {}

    def set_latency(self, ms: float | tuple[float, float] | None) -> None:
        """Delay every Graph call by ``ms`` milliseconds, or by a random amount in a ``(low, high)`` range."""
        low, high = (0.0, 0.0) if ms is None else (ms if isinstance(ms, tuple) else (ms, ms))
        if low < 0 or high < low:
            raise ValueError(f"latency must be a non-negative number or (low, high) range, not {ms!r}")
        self.latency = (float(low), float(high))

    def set_limits(self, **limits: float) -> dict[str, float]:
        """Change any of :data:`LIMITS`, e.g. ``set_limits(concurrency_limit=2, rate_limit=100)``; returns them all."""
        unknown = set(limits) - set(LIMITS)
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(sorted(unknown))}: use {', '.join(LIMITS)}")
        for name, value in limits.items():
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        with self._lock:
            for name, value in limits.items():
                setattr(self, name, value)
            return {name: getattr(self, name) for name in LIMITS}

    def add_rule(self, status: int, **options: object) -> FaultRule:
        """Add a :class:`FaultRule`, e.g. ``add_rule(503, path="/messages/", nth=3)``."""
        rule = FaultRule(status, **options)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove rules, latency, throttling state and counters (limits keep their configured values)."""
        with self._lock:
            self.rules.clear()
            self._blocked_until.clear()
            self._windows.clear()
            self.peak_in_flight.clear()
            self.throttled.clear()
        self.latency = (0.0, 0.0)

    @contextmanager
    def admit(self, app_id: str, key: str, method: str, path: str, *, mailbox: bool = True) -> Iterator[None]:
        """Hold a slot for one Graph call on throttle key ``key``, or raise its 429/5xx.

        The key is a mailbox (its user id) for mail calls, whose concurrency and request rate are
        limited; other calls (``mailbox=False``, e.g. subscriptions) get only rules, latency and the
        Retry-After penalty.
        """
        slot = (app_id, key)
        with self._lock:
            now = self.clock.timestamp()
            self._check_penalty(slot, now)
            in_flight = self._in_flight.get(slot, 0)
            if mailbox:
                self._count_rate(slot, now)
                if in_flight >= self.concurrency_limit:
                    raise self._throttle(slot, now, "concurrency", self.concurrency_retry_after,
                                         "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
            self._in_flight[slot] = in_flight + 1
            self.peak_in_flight[slot] = max(self.peak_in_flight.get(slot, 0), in_flight + 1)
        try:
            low, high = self.latency
            if high:
                time.sleep(self._random.uniform(low, high) / 1000)
            self._apply_rules(slot, method, path)
            yield
        finally:
            with self._lock:
                self._in_flight[slot] -= 1

    def _check_penalty(self, slot: tuple[str, str], now: float) -> None:
        blocked_until = self._blocked_until.get(slot, 0.0)
        if now < blocked_until:
            self.throttled["penalty"] = self.throttled.get("penalty", 0) + 1
            raise GraphError(429, "TooManyRequests", "Retried before the Retry-After interval had elapsed.",
                             {"Retry-After": str(max(1, math.ceil(blocked_until - now)))})

    def _count_rate(self, slot: tuple[str, str], now: float) -> None:
        window = self._windows.get(slot)
        if window is None or now - window[0] >= self.rate_window:
            window = self._windows[slot] = [now, 0]
        window[1] += 1
        if window[1] > self.rate_limit:
            raise self._throttle(slot, now, "rate", math.ceil(window[0] + self.rate_window - now),
                                 "ApplicationThrottled", "Application is over its MailboxRequests limit.")

    def _apply_rules(self, slot: tuple[str, str], method: str, path: str) -> None:
        with self._lock:
            for rule in self.rules:
                if not rule.applies(method, path) or (rule.times is not None and rule.fired >= rule.times):
                    continue
                rule.calls += 1
                hit = rule.calls == rule.nth if rule.nth else self._random.random() < rule.rate
                if not hit:
                    continue
                rule.fired += 1
                code, message = _ERRORS[rule.status]
                if rule.status == 429:
                    raise self._throttle(slot, self.clock.timestamp(), "injected", rule.retry_after, code, message)
                headers = {"Retry-After": str(rule.retry_after)} if rule.status == 503 else {}
                raise GraphError(rule.status, code, message, headers)

    def _throttle(self, slot: tuple[str, str], now: float, reason: str, retry_after: int, code: str,
                  message: str) -> GraphError:
        """A 429 with ``Retry-After``; calling the same key again before it has passed earns a penalty 429."""
        retry_after = max(1, retry_after)
        if self.retry_after_penalty:
            self._blocked_until[slot] = max(self._blocked_until.get(slot, 0.0), now + retry_after)
        self.throttled[reason] = self.throttled.get(reason, 0) + 1
        return GraphError(429, code, message, {"Retry-After": str(retry_after)})
