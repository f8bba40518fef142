"""The identity platform's records: tenants, users, app registrations, grants and tokens.

Plain data; :class:`~emulator.directory.Directory` owns them and changes them under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .client_assertions import KeyCredential
from .scopes import Scopes


@dataclass
class Tenant:
    id: str
    name: str
    user_consent_allowed: bool = True
    """Whether non-admins may consent to the mail scopes themselves (user consent settings)."""
    admin_consent_workflow: bool = True
    """Whether users who cannot consent may request an admin's approval."""
    removed_clients: set[str] = field(default_factory=set)
    """Apps removed in Enterprise applications (service principal deleted) and not consented to since."""


@dataclass
class User:
    id: str
    tenant_id: str
    email: str
    display_name: str
    admin: bool = False
    """Global Administrator: sees "Consent on behalf of your organization"."""
    disabled: bool = False
    tokens_valid_from: datetime | None = None
    """Set by "revoke sessions": tokens issued earlier stop working (AADSTS50173)."""


@dataclass
class App:
    client_id: str
    client_secret: str
    secret_expires_at: datetime
    redirect_uris: tuple[str, ...]
    display_name: str
    permissions: frozenset[str]
    """The statically configured Graph permissions, what ``.default`` stands for."""
    key_credentials: tuple[KeyCredential, ...] = ()
    """Certificates uploaded to the registration: a client assertion signed with one authenticates the app."""
    directory_role_claims: bool = False
    """The manifest's ``groupMembershipClaims`` includes directory roles ("Token configuration > Add groups
    claim > Directory roles"), so tokens carry the ``wids`` claim; off by default, as in Entra
    (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference, ``wids``)."""


@dataclass
class Grant:
    """A delegated permission grant (oAuth2PermissionGrant); ``user_id`` None = tenant-wide (AllPrincipals)."""

    client_id: str
    tenant_id: str
    user_id: str | None
    scopes: frozenset[str]
    granted_at: datetime


@dataclass
class ApprovalRequest:
    """A request a user made through the admin consent workflow."""

    id: str
    tenant_id: str
    user_id: str
    client_id: str
    scopes: frozenset[str]
    justification: str
    requested_at: datetime
    status: str = "pending"


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    tenant_id: str
    scopes: Scopes
    code_challenge: str | None
    """None when the authorize request carried no PKCE challenge (a confidential client may omit it)."""
    nonce: str | None
    issued_at: datetime
    redeemed: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    user_id: str
    tenant_id: str
    scopes: Scopes
    issued_at: datetime
    inactive: bool = False
    """Forced by a fault hook: the next use fails with AADSTS700082."""
    rotated: bool = False
    """Already exchanged for a newer refresh token."""


@dataclass(frozen=True)
class Principal:
    """Who an access token speaks for, as Graph sees it."""

    tenant_id: str
    user_id: str
    client_id: str
    scopes: frozenset[str]
