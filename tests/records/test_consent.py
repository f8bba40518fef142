"""How a tenant's consent was given, as far as the service can know it (issue 16, "Verify")."""

from __future__ import annotations

import pytest

from app.records import consent
from tests.tables import table

pytestmark = pytest.mark.both_engines

TENANT = "7d6f3c1e-0b8a-4f43-9a57-1d2c3b4a5e6f"
USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"


def state(db) -> str:
    return table(db, "tenants").get(TENANT)["consent_state"]


def test_a_sign_in_alone_says_only_that_consent_exists(db):
    consent.note_user_sign_in(db, TENANT)
    assert state(db) == "consented"
    consent.note_user_sign_in(db, TENANT, directory_roles=(USER_ROLE,))
    assert state(db) == "consented"


def test_a_global_administrator_named_by_the_id_token_is_shown_and_a_later_user_keeps_it(db):
    consent.note_user_sign_in(db, TENANT, directory_roles=(consent.GLOBAL_ADMINISTRATOR_ROLE, USER_ROLE))
    assert state(db) == "consented_by_admin"
    consent.note_user_sign_in(db, TENANT, directory_roles=(USER_ROLE,))
    assert state(db) == "consented_by_admin"


def test_an_admin_consent_link_stays_the_stronger_fact(db):
    consent.record_admin_consent(db, TENANT)
    consent.note_user_sign_in(db, TENANT, directory_roles=(consent.GLOBAL_ADMINISTRATOR_ROLE,))
    assert state(db) == "admin_consented"
    assert "Confirmed by a user's sign-in" in table(db, "tenants").get(TENANT)["consent_detail"]
