"""Graph change notifications for tests: a stored subscription and the items Graph delivers for it."""

from datetime import datetime, timedelta, timezone

from app.core.timeutil import iso
from app.web.context import services_of
from tests.tables import table

TENANT = "8f4c6b0e-0000-4000-8000-000000000001"
SECRET = "a-client-state-of-at-least-32-characters!"


def store_subscription(app, db) -> str:
    now = datetime.now(timezone.utc)
    table(db, "tenants").insert({"id": TENANT, "created_at": iso(now), "updated_at": iso(now)})
    table(db, "connections").insert({"id": 7, "tenant_id": TENANT, "user_id": "user-1", "created_at": iso(now),
                              "updated_at": iso(now)})
    table(db, "subscriptions").insert({
        "id": "sub-1", "connection_id": 7, "resource": "/users/user-1/messages", "change_type": "created,updated,deleted",
        "client_state": services_of(app).cipher.encrypt(SECRET), "expires_at": iso(now + timedelta(days=3)),
        "routable_until": iso(now + timedelta(days=3)), "created_at": iso(now), "updated_at": iso(now)})
    return "sub-1"


def notification(subscription_id="sub-1", *, client_state=SECRET, tenant=TENANT, change="created",
                 message_id="AAMkAD-1", etag='W/"CQAAAB"'):
    return {
        "subscriptionId": subscription_id, "clientState": client_state, "tenantId": tenant, "changeType": change,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "resource": f"Users/user-1/Messages/{message_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": f"Users/user-1/Messages/{message_id}",
                         "@odata.etag": etag, "id": message_id},
    }
