"""Demo data for sandbox mode and ``python -m emulator``: two tenants, three users, one app.

The vendor's first demo email is delivered by the service's sandbox (``app/sandbox.py``), not here; for
it to carry the vendor's W-9 it passes ``attachments=[W9_ATTACHMENT]`` to ``deliver_email``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Emulator


def one_page_pdf(title: str, line: str) -> bytes:
    """A valid one-page PDF 1.4 showing two lines of Helvetica (ASCII text, no parentheses or backslashes)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({title}) Tj /F1 11 Tf 0 -28 Td ({line}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    rv, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(rv))
        rv += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(rv)
    rv += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    rv += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    rv += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(rv)


#: The W-9 the demo vendor sends, and the attachment that carries it (see :func:`emulator.attachments.from_spec`).
W9_PDF = one_page_pdf("Form W-9: Acme Corp",
                      "Request for Taxpayer Identification Number - sandbox demo, not a real form")
W9_ATTACHMENT = {"name": "W-9.pdf", "content_type": "application/pdf", "content": W9_PDF}


def seed_demo(emulator: "Emulator", redirect_uri: str | Sequence[str], *,
              certificate_pem: str | bytes | None = None) -> dict[str, Any]:
    """Create the demo tenants, users and app registration; return their ids and credentials.

    Contoso lets users consent to the mail scopes themselves and has an admin
    (admin@contoso.example) and a user (megan@contoso.example). Fabrikam does not allow user
    consent but has the admin consent workflow, so its user (alex@fabrikam.example) meets the
    "Approval required" page; its admin (admin@fabrikam.example) can grant for everyone. With
    ``certificate_pem`` the app also has that certificate, so a client assertion signed with its key works.
    """
    redirect_uris = [redirect_uri] if isinstance(redirect_uri, str) else list(redirect_uri)
    client_id, client_secret = emulator.register_app(redirect_uris=redirect_uris, directory_role_claims=True,
                                                     certificate_pem=certificate_pem)
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
