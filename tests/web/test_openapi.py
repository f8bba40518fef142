"""The OpenAPI document describes every ``/api`` route, is served without a token, and its references resolve."""

from __future__ import annotations

import json

import pytest
from flask import jsonify

from app.web.openapi import IGNORED_METHODS, PARAMETER, UndocumentedRoute, document


def api_routes(app) -> set[tuple[str, str]]:
    return {(method.lower(), PARAMETER.sub(lambda m: "{" + m["name"] + "}", rule.rule))
            for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
            for method in rule.methods - IGNORED_METHODS}


def refs(node) -> set[str]:
    if isinstance(node, dict):
        return {node["$ref"]} if "$ref" in node else set().union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_every_api_route_and_method_is_in_the_document(app, client):
    rv = client.get("/api/openapi.json")  # no token: the document is public
    assert rv.status_code == 200 and rv.mimetype == "application/json"
    doc = rv.get_json()
    assert doc["openapi"] == "3.1.0"
    documented = {(method, path) for path, operations in doc["paths"].items() for method in operations}
    assert documented == api_routes(app)
    assert ("post", "/api/records/{record_id}/messages") in documented


def test_each_operation_names_its_answers_errors_and_path_parameters(client):
    doc = client.get("/api/openapi.json").get_json()
    send = doc["paths"]["/api/records/{record_id}/messages"]["post"]
    assert {"202", "401", "403", "404", "409", "415", "422", "503"} <= set(send["responses"])
    assert [(p["name"], p["in"], p["required"]) for p in send["parameters"]] == [
        ("record_id", "path", True), ("Idempotency-Key", "header", True)]
    assert send["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SendRequest"}
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    assert "401" not in doc["paths"]["/api/openapi.json"]["get"]["responses"]


def test_every_reference_resolves_to_a_component(client):
    doc = client.get("/api/openapi.json").get_json()
    names = {f"#/components/schemas/{name}" for name in doc["components"]["schemas"]}
    assert refs(doc) == names  # nothing dangling, nothing unused
    json.dumps(doc)  # plain JSON all through


def test_a_route_added_without_a_description_fails_the_document(app):
    @app.get("/api/undescribed")
    def undescribed():
        return jsonify({})

    with pytest.raises(UndocumentedRoute, match="undescribed"):
        document(app)
