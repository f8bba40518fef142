"""Sandbox mode: the embedded emulator stands in for Microsoft, seeded with a demo to click through.

The emulator keeps its state in memory, so a sandbox run starts from a fresh sandbox database
too (unless ``DATABASE_PATH`` is set): tokens from an earlier run could not work anyway.
"""

from __future__ import annotations

import sys
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from flask import Flask

from app.core.db import store_location, thread_db
from app.core.timeutil import utcnow
from app.records import organizations
from app.records.records import create_record
from app.records.threads import store_upload
from emulator import Emulator
from emulator.demo import W9_ATTACHMENT, W9_PDF

SANDBOX_DATABASE = "var/sandbox.db"
DEMO_VENDOR = ("Dana Whitfield", "dana@acme.example")


def start_sandbox(settings: dict[str, Any], environ: dict[str, str]) -> tuple[Emulator, dict[str, Any]]:
    """Start the emulator and return it with the settings that point the service at it."""
    emulator = Emulator().start()
    base = settings["PUBLIC_BASE_URL"]
    certificate = settings["AZURE_CLIENT_CERTIFICATE_PATH"]  # the demo app is registered with it, to try one out
    demo = emulator.seed_demo([f"{base}/auth/callback", f"{base}/admin/consent/callback"],
                              certificate_pem=certificate.certificate_pem if certificate else None)
    database = settings["DATABASE_PATH"]
    if "DATABASE_PATH" not in environ:
        database = SANDBOX_DATABASE
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    overrides = {
        "SANDBOX": True,
        "SANDBOX_DEMO": demo,
        "DATABASE_PATH": database,
        "AZURE_CLIENT_ID": demo["client_id"],
        "AZURE_CLIENT_SECRET": "" if certificate else demo["client_secret"],
        "AZURE_AUTHORITY_HOST": environ.get("AZURE_AUTHORITY_HOST") or emulator.authority_host,
        "GRAPH_ENDPOINT": environ.get("GRAPH_ENDPOINT") or emulator.graph_endpoint,
        "REQUESTS_CA_BUNDLE": _trust_bundle(environ.get("REQUESTS_CA_BUNDLE"), emulator),
        **{name: settings[name] for name in ("TOKEN_ENCRYPTION_KEYS", "SECRET_KEY", "API_TOKEN")},
    }
    return emulator, overrides


def _trust_bundle(configured: str | None, emulator: Emulator) -> str:
    """The emulator's CA, plus the configured bundle's CAs when one is set (both must be trusted)."""
    if not configured:
        return emulator.ca_file
    combined = Path(emulator.ca_file).with_name("combined-ca.pem")
    combined.write_bytes(Path(configured).read_bytes() + b"\n" + Path(emulator.ca_file).read_bytes())
    return str(combined)


def demo_email(recipient: str, name: str) -> EmailMessage:
    """The vendor's first email to a demo user, as the user would upload it to the record."""
    message = EmailMessage()
    message["Message-ID"] = make_msgid(domain="acme.example")
    message["From"] = f"{DEMO_VENDOR[0]} <{DEMO_VENDOR[1]}>"
    message["To"] = f"{name} <{recipient}>"
    message["Subject"] = "Onboarding documents for Acme Corp"
    message["Date"] = format_datetime(utcnow())
    message.set_content(f"Hi {name.split()[0]},\n\nAttached are our W-9 and banking details for the vendor file.\n\nDana")
    message.add_attachment(W9_PDF, maintype="application", subtype="pdf", filename=W9_ATTACHMENT["name"])
    return message


def seed_demo_record(app: Flask, emulator: Emulator, organization_id: int, user: str, address: str, name: str,
                     title: str) -> int:
    """A record of ``organization_id`` with an uploaded email whose conversation already sits in the user's mailbox."""
    email = demo_email(address, name)
    emulator.deliver_email(app.config["SANDBOX_DEMO"]["users"][user], subject=email["Subject"],
                           body=email.get_body(("plain",)).get_content(),
                           sender={"name": DEMO_VENDOR[0], "address": DEMO_VENDOR[1]}, to=[address],
                           internet_message_id=email["Message-ID"], attachments=[W9_ATTACHMENT])
    db = thread_db(store_location(app.config))
    record_id = create_record(db, title, f"VEND-{1000 + organization_id}", organization_id=organization_id)["id"]
    store_upload(db, record_id, bytes(email))
    return record_id


def seed_demo(app: Flask, emulator: Emulator) -> dict[str, int]:
    """Two customers, each its own organization with its own tenant and a vendor record.

    Contoso lets its users consent (Megan connects on her own); Fabrikam requires admin approval, so
    Alex meets Option 2 and Fabrikam's admin grants for everyone (Option 1).
    """
    db = thread_db(store_location(app.config))
    tenants = app.config["SANDBOX_DEMO"]["tenants"]
    contoso = organizations.create(db, "Contoso", [tenants["contoso"]])["id"]
    fabrikam = organizations.create(db, "Fabrikam", [tenants["fabrikam"]])["id"]
    return {"contoso": seed_demo_record(app, emulator, contoso, "megan", "megan@contoso.example", "Megan Bowen",
                                        "Acme Corp — vendor onboarding (Contoso)"),
            "fabrikam": seed_demo_record(app, emulator, fabrikam, "alex", "alex@fabrikam.example", "Alex Wilber",
                                         "Acme Corp — vendor onboarding (Fabrikam)")}


def announce(app: Flask, emulator: Emulator) -> None:
    """Print what a person trying the sandbox needs: where to click, whom to sign in as, and the API token."""
    records = seed_demo(app, emulator)
    base = app.config["PUBLIC_BASE_URL"]
    lines = [
        "",
        "Sandbox mode: Microsoft is played by the embedded emulator (its state, and this sandbox database,",
        "start afresh at every start).",
        "Open a record, sign in with Microsoft as one of the accounts below, then click Connect Outlook.",
        f"  Contoso's record:  {base}/records/{records['contoso']}",
        "      Sign in as megan@contoso.example: users of Contoso may consent themselves.",
        f"  Fabrikam's record: {base}/records/{records['fabrikam']}",
        "      Option 2: sign in as alex@fabrikam.example and meet \"admin approval required\".",
        "      Option 1: sign in as admin@fabrikam.example and tick \"Consent on behalf of your organization\"",
        f"      (or an operator opens {base}/admin/consent); then Alex signs in without an admin.",
        f"  Emulator controls: {emulator.base_url}/_emulator/",
        f"  Admin page:        {base}/admin  (sign in with the API token)",
        f"  API token:         {app.config['API_TOKEN']}",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
