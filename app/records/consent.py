"""Tenants' consent and sign-in outcomes: what happened at Entra, remembered, and what people are told.

Option 1 (an administrator consents for the organization) and Option 2 (a user hits "admin approval
required") end here: the tenant's consent state, the record's latest failed consent, and the page
text that explains each outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlite_utils import Database

from app.core.db import write_transaction
from app.core.timeutil import now_iso
from app.microsoft.failures import aadsts_codes, consent_outcome
from app.records import events


@dataclass(frozen=True)
class ConsentProblem:
    """What happened at sign-in and what the user should do next, for a page or a JSON body."""

    code: str
    title: str
    what_happened: str
    what_next: str
    ok: bool = False


ADMIN_STEP = ("An administrator of your organization can approve the app for everyone with the admin "
              "consent link (/admin/consent), or by ticking \"Consent on behalf of your organization\" "
              "when they connect. Then click Connect Outlook again.")

_PROBLEMS = {
    "approval_requested": ("Waiting for admin approval",
                           "Your organization requires an administrator to approve this app, and your "
                           "approval request has been sent to them.",
                           "You will get an email when it is approved; then click Connect Outlook again. "
                           + ADMIN_STEP),
    "approval_required": ("Admin approval required",
                          "Your organization only lets administrators grant this app access to mailboxes.",
                          ADMIN_STEP),
    "declined": ("Consent declined",
                 "The permissions were not granted, so Outlook is not connected.",
                 "Click Connect Outlook again and accept the requested permissions to keep this record's "
                 "conversation in sync."),
    "sign_in_expired": ("Sign-in expired",
                        "This sign-in link was already used, has expired, or was started in another browser.",
                        "Go back to the record and click Connect Outlook again."),
    "sign_in_rejected": ("Sign-in could not be completed", "The sign-in response was not valid.",
                         "Go back to the record and click Connect Outlook again."),
    "other_organization": ("This account belongs to another organization",
                           "The Microsoft account you signed in with is of an organization other than this "
                           "record's, so its mailbox was not connected and nothing was stored.",
                           "Sign in with an account of your own organization. If your organization's Microsoft "
                           "tenant should own this record, the records platform's administrator can assign it."),
    "other_organization_record": ("This record belongs to another organization",
                                  "You are signed in with an account of another organization than this record's.",
                                  "Open the record from your own organization's records, or sign out and sign in "
                                  "with an account of this record's organization."),
    "no_record": ("Connect Outlook needs a record",
                  "Outlook is connected from a record's page, and this link names no record that exists.",
                  "Open the record in the records platform and click Connect Outlook there."),
    "form_expired": ("This form had expired",
                     "The Connect Outlook form was too old or came from another site, so nothing was started.",
                     "Go back to the record and click Connect Outlook again."),
    "tenant_not_allowed": ("Organization not allowed",
                           "This service is not configured to accept mailboxes from your organization.",
                           "Ask the service's operator to add your tenant to ALLOWED_TENANTS."),
    "app_misconfigured": ("The service's app registration needs attention",
                          "Microsoft rejected the service's own credentials.",
                          "Nothing is wrong with your account; the operator has been alerted."),
    "identity_unavailable": ("Microsoft sign-in is unavailable",
                             "The Microsoft identity platform did not answer.",
                             "Wait a minute and click Connect Outlook again."),
    "too_many_sign_ins": ("Too many sign-ins",
                          "More sign-ins were started from your network than the service allows in a short time.",
                          "Wait a few minutes, then click Connect Outlook again."),
}

AWAITING_APPROVAL = ("approval_requested", "approval_required")  # the outcomes that wait for an admin
TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def consent_problem(code: str, detail: str = "") -> ConsentProblem:
    title, what_happened, what_next = _PROBLEMS[code]
    if detail:
        what_happened = f"{what_happened} ({detail})"
    return ConsentProblem(code, title, what_happened, what_next)


def record_consent_problem(db: Database, record_id: int | None, error: str, description: str) -> ConsentProblem:
    """Remember a failed consent on the record (so its page can say so) and explain it.

    Only the latest outcome per record is kept (the page shows no more), so repeated error
    redirects cannot grow the table. A record that comes to wait for an admin's approval emits
    ``consent.awaiting_approval`` (once: a user trying again while it waits adds none). Entra's error
    redirect names no tenant, so the event names the record.
    """
    outcome = consent_outcome(error, description)
    codes = aadsts_codes(description)
    error_code = f"AADSTS{min(codes)}" if codes else error[:64]
    with write_transaction(db):  # it reads before it writes: take the write lock first (app.core.db)
        already_waiting = record_id is not None and waited_for_approval(db, record_id)
        forget_record(db, record_id)
        db.execute(
            "INSERT INTO consent_requests (record_id, outcome, error_code, created_at) VALUES (?, ?, ?, ?)",
            [record_id, outcome, error_code, now_iso()],
        )
        if record_id is not None and outcome in AWAITING_APPROVAL and not already_waiting:
            events.emit(db, [events.Event("consent.awaiting_approval",
                                          {"record_id": record_id, "outcome": outcome, "error_code": error_code})])
    return consent_problem(outcome)


def forget_record(db: Database, record_id: int | None) -> None:
    """Drop the consent attempts remembered on the record (a new outcome replaces them; a purge ends them)."""
    db.execute("DELETE FROM consent_requests WHERE record_id = ?", [record_id])


def canonical_tenant_id(value: str) -> str | None:
    """``value`` as a tenant id (a GUID, lower case), or ``None`` when it is not one."""
    return value.lower() if TENANT_ID.fullmatch(value) else None


def ensure_tenant(db: Database, tenant_id: str) -> None:
    if canonical_tenant_id(tenant_id) != tenant_id:
        raise ValueError(f"not a tenant id (a lower-case GUID): {tenant_id[:64]!r}")
    now = now_iso()
    db.execute("INSERT INTO tenants (id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               [tenant_id, now, now])


def record_admin_consent(db: Database, tenant_id: str) -> None:
    """The admin-consent redirect reported success; its ``tenant`` value is unverified until a
    user of that tenant signs in (Microsoft: never trust it alone)."""
    with db.atomic():
        ensure_tenant(db, tenant_id)
        db.execute(
            "UPDATE tenants SET consent_state = 'admin_consented', updated_at = ?, "
            "consent_detail = 'reported by the admin-consent redirect, not yet confirmed by a sign-in' WHERE id = ?",
            [now_iso(), tenant_id])


# How a tenant's consent was given, as far as the service can know it; it never claims more. The
# consent screen's "on behalf of your organization" box leaves no trace in the tokens, so a sign-in
# alone says only that consent exists; when the ID token names the signer's directory roles (``wids``,
# if the app registration asks for them) a Global Administrator's sign-in, the only role shown the box
# (../shared/reference/msal-consent.md), says an admin consented, for everyone or for themselves.
GLOBAL_ADMINISTRATOR_ROLE = "62e90394-69f5-4237-9190-012177145e10"  # Entra's built-in role template id
CONSENT_STATES = {
    "admin_consented": "An administrator consented for the whole organization with the admin consent link.",
    "admin_approved": "An administrator approved a user's request (inferred: a user whose sign-in needed "
                      "approval has now connected).",
    "consented_by_admin": "Consented when a Global Administrator signed in: for the whole organization if they "
                          "ticked \"Consent on behalf of your organization\", else for themselves (the box "
                          "leaves no trace the service can see).",
    "consented": "Consented; how is unknown: a user for themselves, or an administrator for everyone "
                 "(the consent screen's box leaves no trace the service can see).",
    "access_removed": "Access removed: Microsoft refused a token refresh because consent is gone, as when the "
                      "app is removed from the tenant (Enterprise applications > Remove).",
}
# AADSTS codes of a refresh refused because the app's consent is gone from the tenant.
REMOVED_CODES = ("AADSTS65001", "AADSTS700016")


def _set_state(db: Database, tenant_id: str, state: str, detail: str) -> None:
    db.execute("UPDATE tenants SET consent_state = ?, consent_detail = ?, updated_at = ? WHERE id = ?",
               [state, detail, now_iso(), tenant_id])


def note_user_sign_in(db: Database, tenant_id: str, *, after_approval_request: bool = False,
                      directory_roles: tuple[str, ...] = ()) -> None:
    """A user of the tenant signed in and connected: that confirms an admin consent, shows an approved
    request (when the record last met "approval required"), a Global Administrator's consent (when the
    ID token names the role), or consent of unknown kind. A later sign-in never lowers what is known."""
    ensure_tenant(db, tenant_id)
    [state] = [row["consent_state"] for row in db.query("SELECT consent_state FROM tenants WHERE id = ?", [tenant_id])]
    if state == "admin_consented":
        _set_state(db, tenant_id, state, "Confirmed by a user's sign-in. " + CONSENT_STATES[state])
    elif after_approval_request or state == "admin_approved":
        _set_state(db, tenant_id, "admin_approved", CONSENT_STATES["admin_approved"])
    elif GLOBAL_ADMINISTRATOR_ROLE in directory_roles or state == "consented_by_admin":
        _set_state(db, tenant_id, "consented_by_admin", CONSENT_STATES["consented_by_admin"])
    else:
        _set_state(db, tenant_id, "consented", CONSENT_STATES["consented"])


def note_refused_refresh(db: Database, tenant_id: str, reason: str) -> None:
    """A token refresh of a user of the tenant was refused with ``reason``; a removal code means the
    tenant's consent is gone (until a user connects again)."""
    if any(code in reason for code in REMOVED_CODES):
        _set_state(db, tenant_id, "access_removed", f"{CONSENT_STATES['access_removed']} ({reason})")


def waited_for_approval(db: Database, record_id: int) -> bool:
    """Whether the record's latest consent attempt ended at "admin approval required"."""
    rows = list(db.query("SELECT outcome FROM consent_requests WHERE record_id = ? ORDER BY id DESC LIMIT 1",
                         [record_id]))
    return bool(rows) and rows[0]["outcome"] in AWAITING_APPROVAL
