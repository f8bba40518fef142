"""Demo data for sandbox mode and ``python -m emulator``: two tenants, three users, one app."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Emulator


def seed_demo(emulator: "Emulator", redirect_uri: str | Sequence[str]) -> dict[str, Any]:
    """Create the demo tenants, users and app registration; return their ids and credentials.

    Contoso lets users consent to the mail scopes themselves and has an admin
    (admin@contoso.example) and a user (megan@contoso.example). Fabrikam does not allow user
    consent but has the admin consent workflow, so its user (alex@fabrikam.example) meets the
    "Approval required" page; its admin (admin@fabrikam.example) can grant for everyone.
    """
    redirect_uris = [redirect_uri] if isinstance(redirect_uri, str) else list(redirect_uri)
    client_id, client_secret = emulator.register_app(redirect_uris=redirect_uris, directory_role_claims=True)
    contoso = emulator.add_tenant("Contoso")
    fabrikam = emulator.add_tenant("Fabrikam", user_consent_allowed=False, admin_consent_workflow=True)
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uris[0],
        "tenants": {"contoso": contoso, "fabrikam": fabrikam},
        "users": {
            "contoso_admin": emulator.add_user(contoso, "admin@contoso.example", display_name="Contoso Admin",
                                               admin=True),
            "megan": emulator.add_user(contoso, "megan@contoso.example", display_name="Megan Bowen"),
            "fabrikam_admin": emulator.add_user(fabrikam, "admin@fabrikam.example", display_name="Fabrikam Admin",
                                                admin=True),
            "alex": emulator.add_user(fabrikam, "alex@fabrikam.example", display_name="Alex Wilber"),
        },
    }
