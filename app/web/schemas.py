"""The JSON shapes of the ``/api`` routes, as JSON Schema (2020-12, which OpenAPI 3.1 uses).

:mod:`app.web.openapi` publishes them as the document's components; each route names the ones it
takes and answers. They describe what the code returns: schemathesis checks every answer of the
running service against them (``tests/web/test_openapi_conformance.py``), so a field added to an
answer and not here fails the suite.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

MAX_ROW_ID = 2**63 - 1  # as app.web.errors: an id is a positive SQLite integer


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), description: str = "") -> Schema:
    """An object with these properties, all present unless ``optional`` names them."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": [name for name in properties if name not in optional]}
    if description:
        schema["description"] = description
    return schema


ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}
TEXT: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
FLAG: Schema = {"type": "boolean"}


def _list_of(name: str, item: str) -> Schema:
    return _object({name: {"type": "array", "items": ref(item)}})


SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _object({"code": TEXT, "message": TEXT})},
                     description="Every error answer: a stable `code` to branch on and a sentence for people."),
    "NewRecord": _object({
        "title": {"type": "string", "minLength": 1, "maxLength": 500},
        "external_id": nullable({"type": "string", "maxLength": 200}),
        "organization_id": {**ID, "description": "Defaults to the default organization."},
    }, optional=("external_id", "organization_id")),
    "Record": _object({"id": ID, "title": TEXT, "external_id": nullable(TEXT), "organization_id": ID,
                       "created_at": TIME}),
    "Address": _object({"name": nullable(TEXT), "address": TEXT}),
    "Attachment": _object({
        "id": ID, "name": TEXT, "content_type": TEXT, "size": nullable({"type": "integer", "minimum": 0}),
        "inline": FLAG, "kind": {"enum": ["file", "item", "reference"]}, "content_id": nullable(TEXT),
        "source_url": nullable(TEXT),
        "kept": {**FLAG, "description": "Whether the bytes are stored and can be downloaded."},
        "skipped_reason": nullable({**TEXT, "description": "Why the bytes are not kept (too large, an Outlook "
                                                           "item, a link to a cloud file)."}),
    }),
    "ThreadEntry": _object({
        "id": ID, "internet_message_id": nullable(TEXT), "subject": nullable(TEXT), "from": nullable(ref("Address")),
        "to": {"type": "array", "items": ref("Address")}, "cc": {"type": "array", "items": ref("Address")},
        "sent_at": nullable(TIME), "direction": {"enum": ["inbound", "outbound"]},
        "source": {"enum": ["upload", "graph", "sent"]}, "automated": FLAG,
        "deleted": {**FLAG, "description": "Deleted in the mailbox; the record keeps it."},
        "in_reply_to": nullable(TEXT), "references": {"type": "array", "items": TEXT},
        "body_type": nullable({"enum": ["text", "html"]}),
        "body": nullable({**TEXT, "description": "Text as sent; HTML sanitized."}),
        "body_truncated": FLAG, "remote_images": FLAG, "body_preview": nullable(TEXT),
        "attachments": {"type": "array", "items": ref("Attachment")},
    }),
    "Thread": _object({"record_id": ID, "messages": {"type": "array", "items": ref("ThreadEntry")}}),
    "RecordAttachment": {"allOf": [ref("Attachment"), _object({"message_id": ID,
                                                               "internet_message_id": nullable(TEXT)})]},
    "RecordAttachments": _object({"record_id": ID, "attachments": {"type": "array", "items": ref("RecordAttachment")},
                                  "not_kept": {"type": "integer", "minimum": 0}}),
    "NewAttachment": _object({"name": {"type": "string", "minLength": 1, "maxLength": 255},
                              "content_type": {"type": "string", "maxLength": 255},
                              "content_base64": {"type": "string", "contentEncoding": "base64"}},
                             optional=("content_type",)),
    "SendRequest": _object({
        "connection_id": ID,
        "to": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 100,
               "description": "Required unless `reply` (a reply goes to the conversation's participants)."},
        "cc": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 100},
        "subject": nullable({"type": "string", "maxLength": 998}),
        "body": {"type": "string", "maxLength": 1_000_000},
        "body_type": {"enum": ["text", "html"]},
        "reply": FLAG, "automated": FLAG,
        "attachments": {"type": "array", "items": ref("NewAttachment"), "maxItems": 20,
                        "description": "At most 35 MB together (Exchange Online's default message limit)."},
    }, optional=("to", "cc", "subject", "body_type", "reply", "automated", "attachments")),
    "SendAccepted": _object({"id": ID, "status": {"enum": ["queued", "sending", "sent", "failed"]}}),
    "Send": _object({
        "id": ID, "record_id": ID, "connection_id": ID, "status": {"enum": ["queued", "sending", "sent", "failed"]},
        "error": nullable(TEXT), "automated": FLAG, "internet_message_id": nullable(TEXT), "created_at": TIME,
        "updated_at": TIME, "sent_at": nullable(TIME), "reply": FLAG,
        "to": {"type": "array", "items": TEXT}, "cc": {"type": "array", "items": TEXT}, "subject": nullable(TEXT),
    }),
    "Connection": _object({
        "id": ID, "tenant_id": TEXT, "user_id": TEXT, "email": nullable(TEXT), "display_name": nullable(TEXT),
        "status": {"enum": ["active", "reconnect_required", "disconnected"]}, "status_reason": nullable(TEXT),
        "created_at": TIME, "updated_at": TIME,
    }),
    "Connections": _list_of("connections", "Connection"),
    "Subscription": _object({
        "id": {**TEXT, "description": "Graph's subscription id."}, "connection_id": ID, "resource": TEXT,
        "expires_at": TIME, "status": {"enum": ["active", "replaced"]}, "renewed_at": nullable(TIME),
        "last_error": nullable(TEXT),
    }),
    "Subscriptions": _list_of("subscriptions", "Subscription"),
    "Tenant": _object({
        "id": TEXT, "consent_state": TEXT, "consent_detail": nullable(TEXT), "updated_at": nullable(TIME),
        "organization_id": ID, "organization_name": TEXT,
        "connections": {"type": "array", "items": _object({
            "connection_id": ID, "email": nullable(TEXT), "status": TEXT,
            "granted_scopes": nullable(TEXT)})},
        "granted_scopes": {"type": "array", "items": TEXT},
    }),
    "Tenants": _list_of("tenants", "Tenant"),
    "NewOrganization": _object({"name": {"type": "string", "minLength": 1},
                                "tenant_ids": {"type": "array", "items": TEXT}}, optional=("tenant_ids",)),
    "OrganizationChange": _object({"name": {"type": "string", "minLength": 1},
                                   "tenant_ids": {"type": "array", "items": TEXT}}, optional=("name", "tenant_ids")),
    "Organization": _object({"id": ID, "name": TEXT, "created_at": TIME, "updated_at": TIME,
                             "tenant_ids": {"type": "array", "items": TEXT}, "default": FLAG}),
    "Organizations": _list_of("organizations", "Organization"),
    "Event": _object({
        "id": {**TEXT, "description": "Its `webhook-id`, the same in every delivery of it."},
        "type": {"enum": ["message.linked", "message.updated", "message.deleted", "send.sent", "send.failed",
                          "connection.connected", "connection.reconnect_required", "connection.disconnected",
                          "consent.awaiting_approval"]},
        "timestamp": TIME, "organization_id": ID,
        "data": {"type": "object", "description": "The ids and states the event is about (record, entry, "
                                                  "send, connection, tenant); never a body or a secret."},
    }),
    "Events": _object({"events": {"type": "array", "items": ref("Event")},
                       "next_cursor": {**TEXT, "description": "Where the next page starts (`after`)."}}),
}
