"""Change-notification subscriptions: storage, expiry, revocation, lifecycle events and matching.

Subscriptions are kept in dicts keyed by id, by mailbox and by duplicate key, so creating,
renewing and matching cost the same with 10 or 10,000 of them. An expired subscription is removed
lazily when it is looked up and by a sweep the delivery loop runs; Graph sends nothing when one
expires. When a user's or tenant's access is revoked, their subscriptions get
``reauthorizationRequired``, deliver nothing more, and refuse renew/reauthorize (403) until the
directory says the app has access again.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from emulator import handshake
from emulator.delivery import Delivery, DeliveryConfig
from emulator.entities import Principal
from emulator.errors import GraphError, bad_request
from emulator.mailbox import ChangeEvent

if TYPE_CHECKING:
    from emulator.server import Emulator

logger = logging.getLogger(__name__)

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


@dataclass
class SubscriptionConfig:
    """``max_expiration_minutes``: 10,080 in current docs, 4,230 in older ones (and older tenants)."""

    max_expiration_minutes: int = 10_080
    min_expiration_minutes: int = 45
    validation_timeout: float = 10.0
    allow_loopback_http: bool = True
    verify_tls: bool | str = True


@dataclass
class Subscription:
    id: str
    application_id: str
    creator_id: str
    tenant_id: str
    user_id: str
    folder_id: str | None
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    immutable_ids: bool
    tls_version: str = "v1_2"
    needs_reauthorization: bool = False
    change_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.change_types = frozenset(self.change_type.split(","))

    @property
    def duplicate_key(self) -> tuple:
        """What makes two subscriptions the same for Graph's 409: the app, the user, the resource and the
        change types; not the notification URL ("already exists for the requested combination" of
        changeType and resource, https://learn.microsoft.com/graph/api/subscription-post-subscriptions#response)."""
        return (self.application_id, self.creator_id, self.user_id, self.folder_id, self.change_types)

    def to_graph(self) -> dict:
        return {
            "id": self.id, "resource": self.resource, "applicationId": self.application_id,
            "changeType": self.change_type, "clientState": self.client_state,
            "notificationUrl": self.notification_url, "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url, "expirationDateTime": format_expiry(self.expires),
            "creatorId": self.creator_id, "includeResourceData": False, "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None, "encryptionCertificateId": None, "notificationUrlAppId": None,
        }


def format_expiry(value: datetime) -> str:
    """Graph's seven fractional digits: ``2026-01-01T10:00:00.1234560Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class SubscriptionService:
    def __init__(self, emulator: Emulator, config: SubscriptionConfig | None = None,
                 delivery_config: DeliveryConfig | None = None) -> None:
        self.emulator = emulator
        self.clock = emulator.clock
        self.config = config or SubscriptionConfig(
            max_expiration_minutes=getattr(emulator, "max_subscription_minutes", 10_080))
        self.delivery = Delivery(delivery_config, is_live=self._deliverable, tick=self.sweep)
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._by_user: dict[str, set[str]] = {}
        self._by_key: dict[tuple, str] = {}
        self._expiries: list[tuple[float, str]] = []
        emulator.mail.add_listener(self.on_change)

    def start(self) -> None:
        self.delivery.start()

    def stop(self) -> None:
        self.delivery.stop()

    def check_expiry(self, requested: datetime) -> datetime:
        """Under 45 minutes is raised to 45; beyond the maximum is a 400, never a silent clamp."""
        now = self.clock.now()
        maximum = self.config.max_expiration_minutes
        if requested - now > timedelta(minutes=maximum):
            raise bad_request(f"Subscription expiration can only be {maximum} minutes in the future.",
                              "ExtensionError")
        return max(requested, now + timedelta(minutes=self.config.min_expiration_minutes))

    def add(self, subscription: Subscription, *, validate: bool = True) -> Subscription:
        """Create after the validation handshake(s); 409 for a duplicate of a live subscription."""
        self._check_duplicate(subscription)
        if validate:
            for url in filter(None, (subscription.notification_url, subscription.lifecycle_url)):
                handshake.validate(url, timeout=self.config.validation_timeout, verify=self.config.verify_tls)
        with self._lock:
            self._check_duplicate(subscription)
            self._subscriptions[subscription.id] = subscription
            self._by_user.setdefault(subscription.user_id, set()).add(subscription.id)
            self._by_key[subscription.duplicate_key] = subscription.id
            heapq.heappush(self._expiries, (subscription.expires.timestamp(), subscription.id))
        logger.info("Subscriptions: created %s on %s until %s", subscription.id, subscription.resource,
                    subscription.expires)
        return subscription

    def get(self, subscription_id: str, principal: Principal | None = None) -> Subscription:
        """A live subscription (visible to ``principal``'s app and user when given), else 404."""
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is not None and subscription.expires <= self.clock.now():
                self._remove(subscription)
                subscription = None
        if subscription is None or (principal is not None and (
                subscription.application_id, subscription.creator_id) != (principal.client_id, principal.user_id)):
            raise GraphError(404, "ResourceNotFound", f"Resource '{subscription_id}' does not exist or one of "
                             "its queried reference-property objects are not present.")
        return subscription

    def list(self, principal: Principal | None = None) -> list[Subscription]:
        """The app's live subscriptions created by this user (delegated listing); all of them without one."""
        self.sweep()
        with self._lock:
            return [s for s in self._subscriptions.values() if principal is None
                    or (s.application_id, s.creator_id) == (principal.client_id, principal.user_id)]

    def renew(self, subscription: Subscription, expires: datetime | None,
              notification_url: str | None = None) -> Subscription:
        """PATCH and reauthorize: refused (403) while the app has no access to the creator's mailbox."""
        if not self.emulator.directory.has_access(subscription.tenant_id, subscription.creator_id,
                                                  subscription.application_id):
            raise GraphError(403, "ExtensionError", "Operation: Update; Exception: [Status Code: Forbidden; "
                             "Reason: Access is denied. Check credentials and try again.]")
        with self._lock:
            subscription.needs_reauthorization = False
            if expires is not None:
                subscription.expires = expires
                heapq.heappush(self._expiries, (expires.timestamp(), subscription.id))
            if notification_url is not None:
                subscription.notification_url = notification_url
        return subscription

    def delete(self, subscription: Subscription) -> None:
        with self._lock:
            self._remove(subscription)

    def send_lifecycle(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle event; ``subscriptionRemoved`` also removes it. False without a lifecycle URL."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle event must be one of {LIFECYCLE_EVENTS}, not {event!r}")
        subscription = self.get(subscription_id)
        if event == "subscriptionRemoved":
            self.delete(subscription)
        return self._send_lifecycle(subscription, event)

    def access_revoked(self, *, user_id: str | None = None, tenant_id: str | None = None) -> list[str]:
        """Pause the user's (or tenant's) subscriptions and send each ``reauthorizationRequired``."""
        if user_id is None and tenant_id is None:
            raise ValueError("access_revoked needs a user_id or a tenant_id")
        now = self.clock.now()
        with self._lock:
            affected = [s for s in self._subscriptions.values() if s.expires > now
                        and (user_id is None or s.creator_id == user_id) and tenant_id in (None, s.tenant_id)]
            for subscription in affected:
                subscription.needs_reauthorization = True
        for subscription in affected:
            self._send_lifecycle(subscription, "reauthorizationRequired")
        return [s.id for s in affected]

    def sweep(self) -> None:
        """Remove every subscription whose expiry has passed."""
        now = self.clock.now()
        with self._lock:
            while self._expiries and self._expiries[0][0] <= now.timestamp():
                _, subscription_id = heapq.heappop(self._expiries)
                subscription = self._subscriptions.get(subscription_id)
                if subscription is not None and subscription.expires <= now:
                    logger.info("Subscriptions: %s expired", subscription_id)
                    self._remove(subscription)

    def on_change(self, event: ChangeEvent) -> None:
        """Turn a mailbox change into notifications for every matching live subscription."""
        with self._lock:
            candidates = [self._subscriptions[i] for i in self._by_user.get(event.user_id, ())]
        updated_too = event.change_type == "created" and self.delivery.config.created_then_updated
        for subscription in candidates:
            if subscription.folder_id not in (None, event.folder_id) or not self._deliverable(subscription.id):
                continue
            for change_type in ("created", "updated") if updated_too else (event.change_type,):
                if change_type in subscription.change_types:
                    self.delivery.enqueue(subscription.notification_url,
                                          _notification(subscription, event, change_type), subscription.id)

    def _send_lifecycle(self, subscription: Subscription, event: str) -> bool:
        if not subscription.lifecycle_url:
            return False
        self.delivery.enqueue(subscription.lifecycle_url, {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": format_expiry(subscription.expires),
            "tenantId": subscription.tenant_id, "clientState": subscription.client_state, "lifecycleEvent": event,
        })
        return True

    def _deliverable(self, subscription_id: str) -> bool:
        subscription = self._subscriptions.get(subscription_id)
        return (subscription is not None and not subscription.needs_reauthorization
                and subscription.expires > self.clock.now())

    def _check_duplicate(self, subscription: Subscription) -> None:
        existing = self._by_key.get(subscription.duplicate_key)
        if existing is not None and self._alive(existing):
            raise GraphError(409, "ExtensionError", f"Subscription Id {existing} already exists for the "
                             "requested combination")

    def _alive(self, subscription_id: str) -> bool:
        subscription = self._subscriptions.get(subscription_id)
        return subscription is not None and subscription.expires > self.clock.now()

    def _remove(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(subscription.id, None) is None:
            return
        self._by_user.get(subscription.user_id, set()).discard(subscription.id)
        if self._by_key.get(subscription.duplicate_key) == subscription.id:
            del self._by_key[subscription.duplicate_key]


def _notification(subscription: Subscription, event: ChangeEvent, change_type: str) -> dict:
    """One change notification as in Learn's example for a message: an ``id`` of its own, and the
    message addressed as ``users/{user id}@{tenant id}/messages/{id}`` in ``resource`` and, capitalised,
    in ``resourceData``'s ``@odata.id``
    (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notification-payload).

    A replay or a retry re-sends this same item, so its ``id`` stays the same, as Graph's does.
    """
    message_id = event.immutable_id if subscription.immutable_ids else event.rest_id
    mailbox = f"{event.user_id}@{subscription.tenant_id}"
    return {
        "id": secrets.token_urlsafe(12),
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": format_expiry(subscription.expires),
        "tenantId": subscription.tenant_id,
        "clientState": subscription.client_state,
        "changeType": change_type,
        "resource": f"users/{mailbox}/messages/{message_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                         "@odata.id": f"Users/{mailbox}/Messages/{message_id}", "@odata.etag": event.etag,
                         "id": message_id},
    }
