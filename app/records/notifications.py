"""Parsing and verifying Graph change notifications: pure functions, no Flask, no I/O.

A delivery is a ``{"value": [...]}`` batch that may mix subscriptions, tenants and (on a shared
URL) lifecycle events. The batch is rejected as a whole only when it is not that shape; single
items are accepted or rejected one by one, and a rejected item changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from app.core.queue import NewJob

MAX_ITEMS = 1000
# Notifications without an etag (Graph sends one for messages; a replayer need not) collapse into
# one job per message and change type within a window of this many seconds. A genuine second
# change inside the window is still seen: the job fetches the message as it is when it runs, and
# the delta reconcile backs up anything that slips between.
REPLAY_WINDOW_SECONDS = 60
LIFECYCLE_EVENTS = {"reauthorizationRequired", "subscriptionRemoved", "missed"}
CHANGE_TYPES = {"created", "updated", "deleted"}


class InvalidNotification(Exception):
    """The request body is not a notification batch; ``reason`` is a short slug for logs and metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Delivery(NamedTuple):
    """What one POST carried: how many items, the jobs of the genuine ones, and why the rest were rejected."""

    items: int
    jobs: list[NewJob]
    rejected: Counter[str]


class KnownSubscription(NamedTuple):
    """What the receiver needs to know about a subscription to trust its notifications."""

    connection_id: int
    tenant_id: str
    client_state: bytes  # UTF-8, ready for the constant-time comparison


def accept(body: bytes, lookup: Callable[[str], KnownSubscription | None], now: float) -> Delivery:
    """The jobs of a delivery's genuine items (see :func:`verify_item`), received at ``now``; raises
    :class:`InvalidNotification` when the body is not a notification batch at all."""
    items = parse_batch(body)
    jobs: list[NewJob] = []
    rejected: Counter[str] = Counter()
    window = replay_window(now)
    for item in items:
        outcome = verify_item(item, lookup, window)
        if type(outcome) is str:
            rejected[outcome] += 1
        else:
            jobs.append(outcome)
    return Delivery(len(items), jobs, rejected)


def parse_batch(body: bytes) -> list[Any]:
    """The ``value`` list of a delivery, or :class:`InvalidNotification`."""
    try:
        document = _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidNotification("malformed_json") from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise InvalidNotification("not_a_notification_batch")
    if len(document["value"]) > MAX_ITEMS:
        raise InvalidNotification("too_many_items")
    return document["value"]


def _loads(body: bytes) -> Any:
    """The body's JSON: orjson, in half the standard parser's time on a 10-item batch (bench/findings.md,
    "JSON on the acknowledgement path"). What orjson refuses and the standard parser takes (a lone
    surrogate escaped in a string, an integer past 64 bits, NaN) is read by the latter, so one odd item
    is still rejected alone (:func:`verify_item`) and the batch's other items are kept."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _is_text(value: Any) -> bool:
    """Whether ``value`` is a non-empty string that is valid UTF-8 (JSON can smuggle in lone
    surrogates, which SQLite and ``str.encode`` refuse)."""
    if type(value) is not str or not value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def replay_window(now: float) -> str:
    """The replay window ``now`` falls in, for :func:`verify_item`."""
    return str(int(now // REPLAY_WINDOW_SECONDS))


def verify_item(item: Any, lookup: Callable[[str], KnownSubscription | None], window: str) -> NewJob | str:
    """The job (a ``message`` or ``lifecycle`` one) for a genuine item, else why it was rejected.

    ``window`` is :func:`replay_window` of the time the delivery arrived. Runs for every item of
    every delivery, so it checks types with ``type(...) is`` and reads each field once. Items come
    from :func:`_loads`: containers are exactly dict and list.
    """
    if type(item) is not dict:
        return "malformed_item"
    subscription_id = item.get("subscriptionId")
    if not _is_text(subscription_id):
        return "malformed_item"
    tenant_id = item.get("tenantId")
    if type(tenant_id) is not str:
        return "tenant_mismatch"
    subscription = lookup(subscription_id)
    if subscription is None:
        return "unknown_subscription"
    client_state = item.get("clientState")
    given = client_state.encode() if _is_text(client_state) else b""
    if not hmac.compare_digest(given, subscription.client_state):
        return "client_state_mismatch"
    if tenant_id != subscription.tenant_id:
        return "tenant_mismatch"
    if "lifecycleEvent" in item:
        return _lifecycle(item, subscription_id, subscription)
    return _change(item, subscription_id, subscription, window)


def _lifecycle(item: dict, subscription_id: str, subscription: KnownSubscription) -> NewJob | str:
    event = item["lifecycleEvent"]
    if type(event) is not str or event not in LIFECYCLE_EVENTS:
        return "unknown_lifecycle_event"
    expiry = item.get("subscriptionExpirationDateTime")
    expiry = expiry if _is_text(expiry) else ""
    return NewJob("lifecycle", {"subscription_id": subscription_id, "event": event},
                  f"life|{_digest(subscription_id, event, expiry)}", subscription.connection_id)


def _change(item: dict, subscription_id: str, subscription: KnownSubscription, window: str) -> NewJob | str:
    change_type = item.get("changeType")
    resource_data = item.get("resourceData")
    if type(change_type) is not str or change_type not in CHANGE_TYPES or type(resource_data) is not dict:
        return "malformed_item"
    message_id = resource_data.get("id")
    if not _is_text(message_id) or len(message_id) > 512:
        return "malformed_item"
    # Replays of one version of a message collapse into one job. Without an etag there is no
    # version to compare, so replays collapse within the current replay window instead.
    if change_type == "deleted":
        version = "deleted"
    else:
        etag = resource_data.get("@odata.etag")
        version = etag if _is_text(etag) else f"{change_type}@{window}"
    return NewJob(
        "message",
        {"subscription_id": subscription_id, "message_id": message_id, "change_type": change_type},
        message_dedupe_key(subscription.connection_id, message_id, version),
        subscription.connection_id,
    )


def message_dedupe_key(connection_id: int, message_id: str, version: str) -> str:
    """The queue's dedupe key for one version of a mailbox message: its replays collapse into one job.

    A digest of the ids rather than the ids: Graph message ids run to 150 characters, and the key
    is written with every acknowledgement and indexed in the jobs table.
    """
    return f"msg|{connection_id}|{_digest(message_id, version)}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
