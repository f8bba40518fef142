"""Scope strings: Graph delegated permissions plus the OpenID Connect scopes.

Clients may write Graph scopes bare (``Mail.Send``) or with the resource prefix
(``https://graph.microsoft.com/Mail.Send``); ``.default`` means the permissions the app
registration lists. Names are case-insensitive, as in Entra. Grants and access tokens hold
only Graph scopes; the OIDC scopes decide whether an id_token and a refresh token are issued.
"""

from __future__ import annotations

from dataclasses import dataclass

from .aadsts import AadstsError

GRAPH_RESOURCE = "https://graph.microsoft.com/"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")

DESCRIPTIONS = {
    "User.Read": "Sign you in and read your profile",
    "User.ReadBasic.All": "Read all users' basic profiles",
    "Mail.Read": "Read your mail",
    "Mail.ReadBasic": "Read basic properties of your mail",
    "Mail.ReadWrite": "Read and write access to your mail",
    "Mail.Send": "Send mail as you",
    "MailboxSettings.Read": "Read your mailbox settings",
    "MailboxSettings.ReadWrite": "Read and write your mailbox settings",
    "Calendars.Read": "Read your calendars",
    "Contacts.Read": "Read your contacts",
    "User.Read.All": "Read all users' full profiles",
    "Directory.Read.All": "Read directory data",
    "offline_access": "Maintain access to data you have given it access to",
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
}
ADMIN_ONLY = frozenset({"User.Read.All", "Directory.Read.All"})
_CANONICAL = {name.lower(): name for name in DESCRIPTIONS}


@dataclass(frozen=True)
class Scopes:
    """A parsed ``scope`` parameter."""

    graph: frozenset[str]
    oidc: frozenset[str]

    @property
    def needs_admin(self) -> bool:
        return bool(self.graph & ADMIN_ONLY)

    def to_consent(self) -> list[tuple[str, str]]:
        """(scope, description) lines for a consent page, Graph scopes first."""
        names = sorted(self.graph) + [s for s in OIDC_SCOPES if s in self.oidc and s != "openid"]
        return [(name, DESCRIPTIONS[name]) for name in names]


def parse_scopes(text: str, client_id: str, app_permissions: frozenset[str]) -> Scopes:
    """Parse a space-separated ``scope`` value; raise :class:`AadstsError` for unknown scopes."""
    graph: set[str] = set()
    oidc: set[str] = set()
    for raw in text.split():
        name = raw[len(GRAPH_RESOURCE):] if raw.lower().startswith(GRAPH_RESOURCE) else raw
        if name == ".default":
            graph |= app_permissions
            continue
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            raise _unknown_scope(raw, client_id)
        (oidc if canonical in OIDC_SCOPES else graph).add(canonical)
    return Scopes(frozenset(graph), frozenset(oidc))


def format_scope(graph: frozenset[str], oidc: frozenset[str]) -> str:
    """The ``scope`` of a token response: Graph scopes, then OIDC ones in Entra's order."""
    return " ".join(sorted(graph) + [s for s in OIDC_SCOPES if s in oidc])


def _unknown_scope(raw: str, client_id: str) -> AadstsError:
    if "/" in raw and not raw.lower().startswith(GRAPH_RESOURCE):
        return AadstsError(70011, scope=raw)
    return AadstsError(650053, scope=raw, client_id=client_id)
