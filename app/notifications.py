"""Parsing and verifying Graph change notifications: pure functions, no Flask, no I/O.

A delivery is a ``{"value": [...]}`` batch that may mix subscriptions, tenants and (on a shared
URL) lifecycle events. The batch is rejected as a whole only when it is not that shape; single
items are accepted or rejected one by one, and a rejected item changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_ITEMS = 1000
LIFECYCLE_EVENTS = {"reauthorizationRequired", "subscriptionRemoved", "missed"}
CHANGE_TYPES = {"created", "updated", "deleted"}


class InvalidNotification(Exception):
    """The request body is not a notification batch; ``reason`` is a short slug for logs and metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class KnownSubscription:
    """What the receiver needs to know about a subscription to trust its notifications."""

    connection_id: int
    tenant_id: str
    client_state: str


@dataclass(frozen=True)
class Accepted:
    kind: str  # "message" or "lifecycle"
    dedupe_key: str | None
    connection_id: int
    payload: dict[str, Any]


def parse_batch(body: bytes) -> list[Any]:
    """The ``value`` list of a delivery, or :class:`InvalidNotification`."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidNotification("malformed_json") from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise InvalidNotification("not_a_notification_batch")
    if len(document["value"]) > MAX_ITEMS:
        raise InvalidNotification("too_many_items")
    return document["value"]


def _text(item: dict, key: str) -> str | None:
    """A non-empty string field that is valid UTF-8 (JSON can smuggle in lone surrogates), else None."""
    value = item.get(key)
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def verify_item(item: Any, lookup: Callable[[str], KnownSubscription | None],
                received_at: float) -> Accepted | str:
    """An :class:`Accepted` job for a genuine item, else the reason it was rejected."""
    if not isinstance(item, dict) or not _text(item, "subscriptionId"):
        return "malformed_item"
    if not isinstance(item.get("tenantId"), str):
        return "tenant_mismatch"
    subscription = lookup(item["subscriptionId"])
    if subscription is None:
        return "unknown_subscription"
    client_state = _text(item, "clientState") or ""
    if not hmac.compare_digest(client_state.encode(), subscription.client_state.encode()):
        return "client_state_mismatch"
    if item.get("tenantId") != subscription.tenant_id:
        return "tenant_mismatch"
    if "lifecycleEvent" in item:
        return _lifecycle(item, subscription, received_at)
    return _change(item, subscription, received_at)


def _lifecycle(item: dict, subscription: KnownSubscription, received_at: float) -> Accepted | str:
    event = _text(item, "lifecycleEvent")
    if event not in LIFECYCLE_EVENTS:
        return "unknown_lifecycle_event"
    expiry = _text(item, "subscriptionExpirationDateTime") or ""
    digest = hashlib.sha256(f"{item['subscriptionId']}|{event}|{expiry}".encode()).hexdigest()[:32]
    return Accepted("lifecycle", f"life|{digest}", subscription.connection_id,
                    {"subscription_id": item["subscriptionId"], "event": event, "received_at": received_at})


def _change(item: dict, subscription: KnownSubscription, received_at: float) -> Accepted | str:
    change_type = _text(item, "changeType")
    resource_data = item.get("resourceData")
    if change_type not in CHANGE_TYPES or not isinstance(resource_data, dict):
        return "malformed_item"
    message_id = _text(resource_data, "id")
    if message_id is None or len(message_id) > 512:
        return "malformed_item"
    # Replays of one version of a message collapse into one job; without an etag there is no
    # version to compare, so the item is kept (processing is idempotent anyway).
    version = "deleted" if change_type == "deleted" else _text(resource_data, "@odata.etag")
    dedupe_key = f"msg|{subscription.connection_id}|{message_id}|{version}" if version else None
    return Accepted(
        "message", dedupe_key, subscription.connection_id,
        {"subscription_id": item["subscriptionId"], "message_id": message_id, "change_type": change_type,
         "received_at": received_at},
    )
