"""The identity platform's state: tenants, users, app registrations, consent, tokens and faults.

Everything lives in memory behind one re-entrant lock (``Directory.lock``), which the token
logic in :mod:`emulator.token_grants` also takes so that checking and using a code or
refresh token is atomic. Every time decision asks the shared :class:`~emulator.clock.Clock`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from datetime import datetime, timedelta

from .client_assertions import KeyCredential
from .clock import Clock
from .entities import App, ApprovalRequest, AuthCode, Grant, Principal, RefreshToken, Tenant, User
from .identity_faults import InjectedFailures
from .scopes import GRAPH_APP_ID
from .signing import MalformedToken, Signer

log = logging.getLogger(__name__)

DEFAULT_PERMISSIONS = frozenset({"User.Read", "Mail.ReadWrite", "Mail.Send"})
SECRET_LIFETIME = timedelta(days=730)


class InvalidToken(Exception):
    """A bearer token Graph must refuse (401 InvalidAuthenticationToken).

    ``message`` is the text Graph puts in ``error.message``; ``reason`` is a stable slug:
    missing, malformed, expired, revoked, no_grant or user_disabled.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class Directory:
    """Tenants, users, apps, grants, approval requests, codes, refresh and access tokens.

    One-off failures of the token endpoint are queued on :attr:`injected`.

    :param access_token_lifetime: seconds an access token lives (Entra: 60-90 min, random).
    :param revoke_rotated_refresh_tokens: Entra keeps an exchanged refresh token valid; set
        True to make it fail (AADSTS70000) as stricter servers do.
    :param refresh_token_max_inactive: unused this long, a refresh token fails with AADSTS700082.
    :param revocation_kills_access_tokens: whether revoking a user, removing consent or
        disabling the user also invalidates access tokens already issued. Entra's non-CAE
        tokens live until expiry; Graph with CAE cuts them off. Default True (the stricter).
    :param removed_app_code: what refreshing gives after Enterprise applications > Remove:
        65001 (consent_required, default) or 700016 (unauthorized_client). Undocumented.
    """

    def __init__(self, clock: Clock, *, access_token_lifetime: int = 3600,
                 revoke_rotated_refresh_tokens: bool = False,
                 refresh_token_max_inactive: timedelta = timedelta(days=90),
                 revocation_kills_access_tokens: bool = True, removed_app_code: int = 65001) -> None:
        if removed_app_code not in (65001, 700016):
            raise ValueError(f"removed_app_code must be 65001 or 700016, not {removed_app_code}")
        self.clock = clock
        self.lock = threading.RLock()
        self.signer = Signer()
        self.access_token_lifetime = access_token_lifetime
        self.revoke_rotated_refresh_tokens = revoke_rotated_refresh_tokens
        self.refresh_token_max_inactive = refresh_token_max_inactive
        self.revocation_kills_access_tokens = revocation_kills_access_tokens
        self.removed_app_code = removed_app_code
        self._tenants: dict[str, Tenant] = {}
        self._users: dict[str, User] = {}
        self._apps: dict[str, App] = {}
        self._grants: dict[tuple[str, str, str | None], Grant] = {}
        self._approvals: dict[str, ApprovalRequest] = {}
        self._codes: dict[str, AuthCode] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._access_tokens: dict[str, datetime] = {}
        self.injected = InjectedFailures()

    # -- tenants, users, apps ------------------------------------------------------------

    def add_tenant(self, name: str, *, tenant_id: str | None = None, user_consent_allowed: bool = True,
                   admin_consent_workflow: bool = True) -> Tenant:
        tenant = Tenant(tenant_id or str(uuid.uuid4()), name, user_consent_allowed, admin_consent_workflow)
        with self.lock:
            if tenant.id in self._tenants:
                raise ValueError(f"tenant {tenant.id} exists")
            self._tenants[tenant.id] = tenant
        return tenant

    def add_user(self, tenant_id: str, email: str, *, display_name: str | None = None, admin: bool = False,
                 user_id: str | None = None) -> User:
        user = User(user_id or str(uuid.uuid4()), tenant_id, email, display_name or email.split("@")[0], admin)
        with self.lock:
            self.tenant(tenant_id)
            if user.id in self._users or any(u.email.lower() == email.lower() for u in self._users.values()):
                raise ValueError(f"user {user.id} or {email} exists")
            self._users[user.id] = user
        return user

    def register_app(self, client_id: str | None = None, client_secret: str | None = None,
                     redirect_uris: tuple[str, ...] | list[str] = (), *, display_name: str = "Outlook Integration",
                     permissions: frozenset[str] = DEFAULT_PERMISSIONS, directory_role_claims: bool = False,
                     certificate_pem: str | bytes | None = None) -> App:
        """An app with a client secret, plus the certificate ``certificate_pem`` (public part) when given."""
        app = App(client_id or str(uuid.uuid4()), client_secret or _new_secret(),
                  self.clock.now() + SECRET_LIFETIME, tuple(redirect_uris), display_name, frozenset(permissions),
                  (KeyCredential.from_pem(certificate_pem),) if certificate_pem else (), directory_role_claims)
        with self.lock:
            if app.client_id in self._apps:
                raise ValueError(f"app {app.client_id} exists")
            self._apps[app.client_id] = app
        return app

    def tenant(self, tenant_id: str) -> Tenant:
        """The tenant, or :class:`KeyError` naming it."""
        with self.lock:
            return self._tenants[tenant_id]

    def user(self, user_id: str) -> User:
        with self.lock:
            return self._users[user_id]

    def find_app(self, client_id: str) -> App | None:
        with self.lock:
            return self._apps.get(client_id)

    def tenants(self) -> list[Tenant]:
        with self.lock:
            return list(self._tenants.values())

    def users(self, tenant_id: str | None = None) -> list[User]:
        with self.lock:
            return [u for u in self._users.values() if tenant_id in (None, u.tenant_id)]

    def apps(self) -> list[App]:
        with self.lock:
            return list(self._apps.values())

    # -- consent ---------------------------------------------------------------------------

    def granted_scopes(self, tenant_id: str, user_id: str, client_id: str) -> frozenset[str]:
        """Graph scopes the app holds for this user: their own grant plus any tenant-wide one."""
        with self.lock:
            grants = (self._grants.get((client_id, tenant_id, user_id)), self._grants.get((client_id, tenant_id, None)))
            return frozenset().union(*(g.scopes for g in grants if g))

    def grant_consent(self, tenant_id: str, user_id: str | None, client_id: str, scopes: frozenset[str]) -> Grant:
        """Add ``scopes`` to the user's grant, or to the tenant-wide grant when ``user_id`` is None.

        Consent (re)creates the app's service principal, so a removed app is back; a tenant-wide
        grant also settles the tenant's pending approval requests for the app.
        """
        with self.lock:
            key = (client_id, tenant_id, user_id)
            old = self._grants.get(key)
            merged = scopes | (old.scopes if old else frozenset())
            grant = Grant(client_id, tenant_id, user_id, merged, self.clock.now())
            self._grants[key] = grant
            self.tenant(tenant_id).removed_clients.discard(client_id)
            if user_id is None:
                for request in self._approvals.values():
                    if (request.tenant_id, request.client_id, request.status) == (tenant_id, client_id, "pending"):
                        request.status = "approved"
        log.info("Directory: %s consent for app %s in tenant %s (user %s)", sorted(scopes), client_id, tenant_id,
                 user_id or "all")
        return grant

    def grants(self, tenant_id: str | None = None) -> list[Grant]:
        with self.lock:
            return [g for g in self._grants.values() if tenant_id in (None, g.tenant_id)]

    def request_approval(self, tenant_id: str, user_id: str, client_id: str, scopes: frozenset[str],
                         justification: str) -> ApprovalRequest:
        """Record (or update) the user's pending admin-consent-workflow request for the app."""
        with self.lock:
            for request in self._approvals.values():
                if (request.tenant_id, request.user_id, request.client_id, request.status) == (
                        tenant_id, user_id, client_id, "pending"):
                    request.scopes |= scopes
                    request.justification = justification
                    return request
            request = ApprovalRequest(str(uuid.uuid4()), tenant_id, user_id, client_id, scopes, justification,
                                      self.clock.now())
            self._approvals[request.id] = request
            return request

    def approve_request(self, request_id: str) -> Grant:
        """An admin approves in the portal: the request's scopes become a tenant-wide grant."""
        with self.lock:
            request = self._approvals[request_id]
            return self.grant_consent(request.tenant_id, None, request.client_id, request.scopes)

    def deny_request(self, request_id: str) -> ApprovalRequest:
        """An admin denies in the portal: nothing is granted; the user may ask again."""
        with self.lock:
            request = self._approvals[request_id]
            if request.status != "pending":
                raise ValueError(f"request {request_id} is {request.status}, not pending")
            request.status = "denied"
            return request

    def approval_requests(self, tenant_id: str | None = None) -> list[ApprovalRequest]:
        with self.lock:
            return [r for r in self._approvals.values() if tenant_id in (None, r.tenant_id)]

    def has_access(self, tenant_id: str, user_id: str, client_id: str) -> bool:
        """Whether the app may act for this user now: a live grant, user enabled, app not removed."""
        with self.lock:
            user = self._users.get(user_id)
            return (user is not None and user.tenant_id == tenant_id and not user.disabled
                    and bool(self.granted_scopes(tenant_id, user_id, client_id)))

    # -- codes and tokens (used by emulator.tokens and emulator.token_grants) -------------------

    def add_code(self, code: AuthCode) -> None:
        with self.lock:
            self._codes[code.code] = code

    def find_code(self, code: str) -> AuthCode | None:
        with self.lock:
            return self._codes.get(code)

    def add_refresh_token(self, token: RefreshToken) -> None:
        with self.lock:
            self._refresh_tokens[token.token] = token

    def find_refresh_token(self, token: str) -> RefreshToken | None:
        with self.lock:
            return self._refresh_tokens.get(token)

    def record_access_token(self, token_id: str, issued_at: datetime) -> None:
        with self.lock:
            self._access_tokens[token_id] = issued_at

    def authenticate(self, authorization_header: str | None) -> Principal:
        """The principal behind ``Authorization: Bearer <access token>``, or :class:`InvalidToken`."""
        scheme, _, token = (authorization_header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Access token is empty.", "missing")
        try:
            claims = self.signer.verify(token.strip())
        except MalformedToken:
            raise InvalidToken("CompactToken parsing failed with error code: 80049217", "malformed") from None
        with self.lock:
            issued_at = self._access_tokens.get(claims.get("uti", ""))
            if claims.get("aud") != GRAPH_APP_ID or issued_at is None:
                raise InvalidToken("Access token validation failure. Invalid audience.", "malformed")
            if claims["exp"] <= self.clock.timestamp():
                raise InvalidToken("Lifetime validation failed, the token is expired.", "expired")
            principal = Principal(claims["tid"], claims["oid"], claims["appid"], frozenset(claims["scp"].split()))
            if self.revocation_kills_access_tokens:
                self._check_not_revoked(principal, issued_at)
            return principal

    def _check_not_revoked(self, principal: Principal, issued_at: datetime) -> None:
        user = self._users[principal.user_id]
        if user.disabled:
            raise InvalidToken("The user account is disabled.", "user_disabled")
        if user.tokens_valid_from and issued_at < user.tokens_valid_from:
            raise InvalidToken("Continuous access evaluation resulted in challenge with result: "
                               "InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp", "revoked")
        if not self.has_access(principal.tenant_id, principal.user_id, principal.client_id):
            raise InvalidToken("Access token validation failure. The grant for this application was removed.",
                               "no_grant")

    # -- what admins, users and tests do to break access ---------------------------------------

    def revoke_user(self, user_id: str, code: int = 50173) -> None:
        """Break the user's access so that the next refresh fails with AADSTS ``code``.

        50173 revokes sessions, 700082 makes refresh tokens inactive, 65001 removes the
        user's own consent (a tenant-wide grant still applies), 50057 disables the user.
        """
        actions = {50173: self.revoke_sessions, 700082: self.expire_refresh_tokens,
                   65001: self.remove_user_consent, 50057: self.disable_user}
        if code not in actions:
            raise ValueError(f"revoke_user knows codes {sorted(actions)}, not {code}")
        actions[code](user_id)

    def revoke_sessions(self, user_id: str) -> None:
        with self.lock:
            self.user(user_id).tokens_valid_from = self.clock.now()

    def expire_refresh_tokens(self, user_id: str) -> None:
        with self.lock:
            for token in self._refresh_tokens.values():
                if token.user_id == user_id:
                    token.inactive = True

    def remove_user_consent(self, user_id: str, client_id: str | None = None) -> None:
        with self.lock:
            for key in [k for k in self._grants if k[2] == user_id and client_id in (None, k[0])]:
                del self._grants[key]

    def disable_user(self, user_id: str, disabled: bool = True) -> None:
        with self.lock:
            self.user(user_id).disabled = disabled

    def remove_app(self, tenant_id: str, client_id: str | None = None) -> None:
        """Enterprise applications > Remove: the app's grants in the tenant (all users) are gone."""
        with self.lock:
            tenant = self.tenant(tenant_id)
            clients = [client_id] if client_id else list(self._apps)
            for key in [k for k in self._grants if k[1] == tenant_id and k[0] in clients]:
                del self._grants[key]
            tenant.removed_clients.update(clients)

    def expire_client_secret(self, client_id: str) -> None:
        with self.lock:
            self._apps[client_id].secret_expires_at = self.clock.now()


def _new_secret() -> str:
    """A secret shaped like Entra's (``xxx8Q~`` + 34 characters)."""
    return secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(26)[:34]
