"""``/api/organizations``: the records platform's customers and the Entra tenants each one owns."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from app.records import organizations
from app.web.context import get_db
from app.web.errors import APIError
from app.web.openapi import documented
from app.web.validation import json_body, require_api_token, required_string

bp = Blueprint("api_organizations", __name__, url_prefix="/api")
bp.before_request(require_api_token)


def _tenant_ids(body: dict[str, Any], *, required: bool) -> list[str] | None:
    value = body.get("tenant_ids")
    if value is None and not required:
        return None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise APIError(422, "invalid_field", "'tenant_ids' must be a list of tenant ids.", field="tenant_ids")
    return value


@bp.post("/organizations")
@documented("Create an organization owning some tenants.", takes="NewOrganization", answers={201: "Organization"},
            errors={409})
def create():
    body = json_body()
    name = required_string(body, "name", max_length=organizations.MAX_NAME_LENGTH).strip()
    return jsonify(organizations.create(get_db(), name, _tenant_ids(body, required=True) or [])), 201


@bp.get("/organizations")
@documented("Every organization.", answers={200: "Organizations"})
def list_all():
    return jsonify({"organizations": organizations.all_(get_db())})


@bp.get("/organizations/<id:organization_id>")
@documented("An organization.", answers={200: "Organization"})
def show(organization_id: int):
    return jsonify(organizations.get(get_db(), organization_id))


@bp.patch("/organizations/<id:organization_id>")
@documented("Rename an organization or change its tenants.", takes="OrganizationChange",
            answers={200: "Organization"}, errors={409})
def update(organization_id: int):
    body = json_body()
    name = required_string(body, "name", max_length=organizations.MAX_NAME_LENGTH).strip() if "name" in body else None
    return jsonify(organizations.update(get_db(), organization_id, name=name,
                                        tenant_ids=_tenant_ids(body, required=False)))
