"""``/api/organizations``: customers and their tenants; records belong to one (the default unless named)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.both_engines

CONTOSO = "7d6f3c1e-0b8a-4f43-9a57-1d2c3b4a5e6f"
FABRIKAM = "2e9b1d7a-5c3f-4e8d-b6a1-0f9e8d7c6b5a"


def create(api, name="Contoso Ltd", tenant_ids=(CONTOSO,)):
    return api.post("/api/organizations", json={"name": name, "tenant_ids": list(tenant_ids)})


def test_an_organization_is_created_listed_and_read_back_with_its_tenants(api):
    rv = create(api, tenant_ids=[CONTOSO.upper()])  # tenant ids are GUIDs, compared in lower case
    assert rv.status_code == 201
    organization = rv.get_json()
    assert (organization["name"], organization["tenant_ids"], organization["default"]) == ("Contoso Ltd", [CONTOSO],
                                                                                           False)
    assert api.get(f"/api/organizations/{organization['id']}").get_json() == organization
    listed = api.get("/api/organizations").get_json()["organizations"]
    assert [(o["name"], o["default"]) for o in listed] == [("Default organization", True), ("Contoso Ltd", False)]


def test_a_tenant_belongs_to_at_most_one_organization(api):
    assert create(api).status_code == 201
    rv = create(api, "Someone else", [CONTOSO])
    assert rv.status_code == 409 and rv.get_json()["error"]["code"] == "tenant_taken"
    assert [o["name"] for o in api.get("/api/organizations").get_json()["organizations"]] == [
        "Default organization", "Contoso Ltd"], "nothing was created"


def test_patch_renames_and_replaces_the_tenants(api):
    organization = create(api).get_json()
    rv = api.patch(f"/api/organizations/{organization['id']}", json={"name": "Contoso", "tenant_ids": [FABRIKAM]})
    assert rv.status_code == 200
    assert (rv.get_json()["name"], rv.get_json()["tenant_ids"]) == ("Contoso", [FABRIKAM])
    assert create(api, "Contoso again", [CONTOSO]).status_code == 201, "the tenant it gave up is free again"
    renamed = api.patch(f"/api/organizations/{organization['id']}", json={"name": "Contoso Group"}).get_json()
    assert renamed["tenant_ids"] == [FABRIKAM], "a patch without tenant_ids keeps them"


def test_bad_input_is_refused_with_the_field(api):
    for payload, code in [({"name": "x", "tenant_ids": ["not-a-guid"]}, "invalid_tenant_id"),
                          ({"name": "x", "tenant_ids": "all"}, "invalid_field"),
                          ({"name": "", "tenant_ids": []}, "missing_field"),
                          ({"tenant_ids": []}, "missing_field")]:
        rv = api.post("/api/organizations", json=payload)
        assert (rv.status_code, rv.get_json()["error"]["code"]) == (422, code), payload
    assert api.get("/api/organizations/99").status_code == 404
    assert api.patch("/api/organizations/99", json={"name": "x"}).status_code == 404


def test_a_record_belongs_to_the_default_organization_unless_it_names_one(api):
    organization = create(api).get_json()
    assert api.create_record("Global file")["organization_id"] == 1
    assert api.create_record("Contoso file", organization_id=organization["id"])["organization_id"] == organization["id"]
    for value, code in [(99, "unknown_organization"), ("1", "invalid_field"), (True, "invalid_field")]:
        rv = api.post("/api/records", json={"title": "x", "organization_id": value})
        assert (rv.status_code, rv.get_json()["error"]["code"]) == (422, code), value


def test_organizations_need_the_api_token(client):
    assert client.get("/api/organizations").status_code == 401
