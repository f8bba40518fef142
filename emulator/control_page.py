"""What the control page shows a person trying the emulator: names for the ids its records carry,
mailboxes with their folders, the fields of a reply to a message, and the faults in force in words.

The page is a demo tool as much as a test console, so every id is shown as a name first (the id
stays as secondary detail) and every fault as a sentence. "Reset all faults" restores everything
:func:`fault_lines` reports.
"""

from __future__ import annotations

import re
from dataclasses import asdict, fields
from email.utils import formataddr
from typing import TYPE_CHECKING, Any

from .aadsts import AadstsError
from .delivery import DeliveryConfig
from .directory import Directory
from .faults import FaultRule
from .identity_faults import TokenEndpointFault
from .mail_limits import MailLimits
from .message import address_of

if TYPE_CHECKING:
    from .server import Emulator

#: Messages the mailbox view shows at a time.
PAGE_SIZE = 50
#: Delivery settings that lose, repeat, delay, hold back or reorder notifications: faults, not tuning.
DELIVERY_FAULTS = ("replay_rate", "drop_rate", "delay_rate", "reorder", "held")
_REPLY_PREFIX = re.compile(r"^\s*re:", re.IGNORECASE)


class Names:
    """Labels for the ids of users, tenants and apps; an id nobody has stays as it is."""

    def __init__(self, directory: Directory) -> None:
        self._tenants = {t.id: t.name for t in directory.tenants()}
        self._users = {u.id: formataddr((u.display_name, u.email)) for u in directory.users()}
        self._apps = {a.client_id: a.display_name for a in directory.apps()}

    def user(self, user_id: str | None) -> str:
        return self._users.get(user_id, user_id or "")

    def tenant(self, tenant_id: str | None) -> str:
        return self._tenants.get(tenant_id, tenant_id or "")

    def app(self, client_id: str | None) -> str:
        return self._apps.get(client_id, client_id or "")


def tenants_with_mailboxes(emulator: "Emulator") -> list[dict[str, Any]]:
    """Each tenant with its users, and each user's folders as (name, display name, message count)."""
    return [{"tenant": tenant,
             "users": [{"user": user, "folders": emulator.mail.folder_counts(user.id)}
                       for user in emulator.directory.users(tenant.id)]}
            for tenant in emulator.directory.tenants()]


def reply_fields(message: dict[str, Any], owner_email: str) -> dict[str, str]:
    """The delivery form's fields for a reply to ``message`` arriving in ``owner_email``'s mailbox.

    The reply comes from the other party: the original's sender, or, for a message the owner sent,
    its first recipient. References carry the original's References and then its Message-ID (RFC 5322).
    """
    sender = message.get("from")
    if address_of(sender).lower() == owner_email.lower():
        sender = (message.get("toRecipients") or [sender])[0]
    headers = {h["name"].lower(): h["value"] for h in message.get("internetMessageHeaders") or []}
    subject = message.get("subject") or ""
    return {
        "from": _address(sender),
        "to": owner_email,
        "subject": subject if _REPLY_PREFIX.match(subject) else f"RE: {subject}",
        "in_reply_to": message["internetMessageId"],
        "references": " ".join([*headers.get("references", "").split(), message["internetMessageId"]]),
    }


def short_id(value: str | None) -> str:
    """The tail of a long id: Exchange's ids of one mailbox share their first half."""
    value = (value or "").rstrip("=")
    return value if len(value) <= 12 else f"…{value[-10:]}"


def fault_lines(emulator: "Emulator", names: Names) -> list[str]:
    """Every fault in force, in words: Graph rules and latency, queued token-endpoint failures,
    and throttling, mail-size and delivery settings that differ from their defaults."""
    rv = [_rule_line(rule) for rule in emulator.faults.rules]
    low, high = emulator.faults.latency
    if high:
        rv.append(f"Every Graph call waits {low:g} ms." if low == high else
                  f"Every Graph call waits between {low:g} and {high:g} ms.")
    for failure, user_id, remaining in emulator.directory.injected.queued():
        rv.append(_identity_line(failure, names.user(user_id) if user_id else None, remaining))
    changed = [("Graph throttling", emulator.set_graph_limits(), emulator.faults.initial_limits),
               ("Mail size limit", emulator.set_mail_limits(), asdict(MailLimits())),
               ("Notification delivery", _delivery_faults(emulator.configure_delivery()),
                _delivery_faults(asdict(DeliveryConfig())))]
    for label, current, defaults in changed:
        rv += [f"{label}: {name.replace('_', ' ')} is {current[name]} (default {defaults[name]})."
               for name in defaults if current[name] != defaults[name]]
    return rv


def reset_faults(emulator: "Emulator") -> None:
    """Undo everything :func:`fault_lines` reports."""
    emulator.clear_faults()
    emulator.set_graph_limits(**emulator.faults.initial_limits)
    emulator.set_mail_limits(**asdict(MailLimits()))
    defaults = {f.name: f.default for f in fields(DeliveryConfig)}
    emulator.configure_delivery(**_delivery_faults(defaults))


def _delivery_faults(settings: dict[str, Any]) -> dict[str, Any]:
    return {name: settings[name] for name in DELIVERY_FAULTS}


def _rule_line(rule: FaultRule) -> str:
    call = f"{rule.method.upper()} call" if rule.method else "call"
    where = f" whose path matches {rule.path!r}" if rule.path else ""
    which = (f"the {_ordinal(rule.nth)} {call}" if rule.nth else f"every {call}" if rule.rate >= 1 else
             f"{rule.rate:.0%} of {call}s")
    cap = f", at most {rule.times} times" if rule.times is not None else ""
    retry = f" with Retry-After {rule.retry_after} s" if rule.status in (429, 503) else ""
    return f"Graph answers {rule.status}{retry} to {which}{where}{cap} (fired {rule.fired} so far)."


def _identity_line(failure: AadstsError | TokenEndpointFault, user: str | None, remaining: int) -> str:
    if isinstance(failure, AadstsError):
        times = "The next refresh fails" if remaining == 1 else f"The next {remaining} refreshes fail"
        return f"{times} (of {user or 'anyone'}) with AADSTS{failure.code} ({failure.entry.error})."
    times = "The next token request gets" if remaining == 1 else f"The next {remaining} token requests get"
    retry = f" with Retry-After {failure.retry_after} s" if failure.retry_after else ""
    return f"{times} HTTP {failure.status}{retry}."


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _address(recipient: dict[str, Any] | None) -> str:
    inner = (recipient or {}).get("emailAddress", {})
    name, address = inner.get("name") or "", inner.get("address") or ""
    return formataddr((name if name != address else "", address))
