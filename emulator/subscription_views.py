"""``/v1.0/subscriptions``: create (after the handshake), get, list, PATCH renew, DELETE, reauthorize.

The request body is checked the way Graph checks it: ``changeType`` from created/updated/deleted,
an https ``notificationUrl`` (http only for loopback hosts when allowed), ``clientState`` of at most
128 characters, a mail ``resource`` in the caller's own mailbox, and an expiry within the maximum.
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from emulator import handshake
from emulator.errors import access_denied, bad_request
from emulator.routing import NO_SCOPE, READ_MAIL, GraphRequest, GraphResponse, split_path
from emulator.subscriptions import Subscription, SubscriptionConfig

if TYPE_CHECKING:
    from emulator.graph import Graph

MAX_CLIENT_STATE = 128
_CHANGE_TYPES = {"created", "updated", "deleted"}
_TLS_VERSIONS = {"v1_0", "v1_1", "v1_2", "v1_3"}
_PATCHABLE = {"expirationDateTime", "notificationUrl"}


def create_subscription(graph: Graph, request: GraphRequest) -> GraphResponse:
    service = graph.emulator.subscriptions
    body = request.json()
    principal = request.principal
    if body.get("includeResourceData"):
        raise bad_request("includeResourceData (rich notifications) is not supported by the emulator.")
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
        raise bad_request(f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
    tls_version = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls_version not in _TLS_VERSIONS:
        raise bad_request(f"Invalid latestSupportedTlsVersion '{tls_version}'.")
    resource = body.get("resource")
    user_id, folder_id = _target(graph, request, resource)
    lifecycle_url = body.get("lifecycleNotificationUrl")
    subscription = Subscription(
        id=str(uuid.uuid4()), application_id=principal.client_id, creator_id=principal.user_id,
        tenant_id=principal.tenant_id, user_id=user_id, folder_id=folder_id, resource=resource,
        change_type=_change_type(body.get("changeType")),
        notification_url=_url(body.get("notificationUrl"), "notificationUrl", service.config),
        lifecycle_url=None if lifecycle_url is None else _url(lifecycle_url, "lifecycleNotificationUrl",
                                                              service.config),
        client_state=client_state, expires=service.check_expiry(_expiry(body.get("expirationDateTime"))),
        immutable_ids=request.immutable_ids, tls_version=tls_version,
    )
    service.add(subscription)
    return _subscription(graph, subscription, 201)


def get_subscription(graph: Graph, request: GraphRequest) -> GraphResponse:
    subscription = graph.emulator.subscriptions.get(request.params["id"], request.principal)
    return _subscription(graph, subscription, 200)


def list_subscriptions(graph: Graph, request: GraphRequest) -> GraphResponse:
    value = [s.to_graph() for s in graph.emulator.subscriptions.list(request.principal)]
    return GraphResponse(200, {"@odata.context": f"{graph.root}/$metadata#subscriptions", "value": value})


def update_subscription(graph: Graph, request: GraphRequest) -> GraphResponse:
    """Renew (new ``expirationDateTime``) and reauthorize in one call; may also move ``notificationUrl``."""
    service = graph.emulator.subscriptions
    body = request.json()
    if "lifecycleNotificationUrl" in body:
        raise bad_request("lifecycleNotificationUrl cannot be updated; delete the subscription and create a "
                          "new one with it.")
    unknown = sorted(set(body) - _PATCHABLE)
    if unknown:
        raise bad_request(f"Property '{unknown[0]}' cannot be updated on a subscription.")
    subscription = service.get(request.params["id"], request.principal)
    expires = service.check_expiry(_expiry(body["expirationDateTime"])) if "expirationDateTime" in body else None
    url = None
    if "notificationUrl" in body:
        url = _url(body["notificationUrl"], "notificationUrl", service.config)
        handshake.validate(url, timeout=service.config.validation_timeout, verify=service.config.verify_tls)
    return _subscription(graph, service.renew(subscription, expires, url), 200)


def delete_subscription(graph: Graph, request: GraphRequest) -> GraphResponse:
    service = graph.emulator.subscriptions
    service.delete(service.get(request.params["id"], request.principal))
    return GraphResponse(204)


def reauthorize_subscription(graph: Graph, request: GraphRequest) -> GraphResponse:
    """Reauthorize without changing the expiry."""
    service = graph.emulator.subscriptions
    service.renew(service.get(request.params["id"], request.principal), None)
    return GraphResponse(204)


def _subscription(graph: Graph, subscription: Subscription, status: int) -> GraphResponse:
    return GraphResponse(status, {"@odata.context": f"{graph.root}/$metadata#subscriptions/$entity",
                                  **subscription.to_graph()})


def _target(graph: Graph, request: GraphRequest, resource: object) -> tuple[str, str | None]:
    """(mailbox user id, folder id or None) for a mail resource such as ``/me/mailFolders('inbox')/messages``."""
    if not isinstance(resource, str) or "?" in resource:
        raise bad_request(f"Unsupported resource '{resource}'; the emulator supports message resources "
                          "without query options.", "InvalidRequest")
    raw = split_path(resource)
    lowered = [s.lower() for s in raw]
    if lowered[:1] == ["me"]:
        user_ref, rest = request.principal.user_id, raw[1:]
    elif lowered[:1] == ["users"] and len(raw) > 1:
        user_ref, rest = raw[1], raw[2:]
    else:
        rest = []
    shape = [s.lower() for s in rest]
    if shape == ["messages"]:
        folder_ref = None
    elif len(shape) == 3 and shape[0] == "mailfolders" and shape[2] == "messages":
        folder_ref = rest[1]
    else:
        raise bad_request(f"Unsupported resource '{resource}'.", "InvalidRequest")
    if not request.principal.scopes & READ_MAIL:
        raise access_denied()
    mailbox = graph.find_mailbox(user_ref)
    if mailbox.user_id != request.principal.user_id:
        raise access_denied()
    with mailbox.lock:
        return mailbox.user_id, mailbox.folder(folder_ref).id if folder_ref else None


def _change_type(value: object) -> str:
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
    if not parts or any(p not in _CHANGE_TYPES for p in parts):
        raise bad_request(f"Invalid changeType '{value}'; use created, updated and/or deleted.", "InvalidRequest")
    return ",".join(parts)


def _url(value: object, name: str, config: SubscriptionConfig) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or not parts.hostname:
        raise bad_request(f"Invalid {name} '{value}'.", "InvalidRequest")
    if parts.scheme == "https" or (parts.scheme == "http" and config.allow_loopback_http and _loopback(parts.hostname)):
        return value
    raise bad_request(f"The {name} must use the https scheme: '{value}'.", "InvalidRequest")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _expiry(value: object) -> datetime:
    try:
        rv = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        rv = None
    if rv is None:
        raise bad_request(f"Invalid expirationDateTime '{value}'.", "InvalidRequest")
    return rv if rv.tzinfo else rv.replace(tzinfo=timezone.utc)


ROUTES = [
    ("POST", "/subscriptions", create_subscription, NO_SCOPE),
    ("GET", "/subscriptions", list_subscriptions, NO_SCOPE),
    ("GET", "/subscriptions/{id}", get_subscription, NO_SCOPE),
    ("PATCH", "/subscriptions/{id}", update_subscription, NO_SCOPE),
    ("DELETE", "/subscriptions/{id}", delete_subscription, NO_SCOPE),
    ("POST", "/subscriptions/{id}/reauthorize", reauthorize_subscription, NO_SCOPE),
]
