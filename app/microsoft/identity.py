"""Everything msal: the sign-in flow, and per-connection token caches encrypted at rest.

msal binds a token cache to an application object, so each use builds a
``ConfidentialClientApplication`` around that connection's cache; one ``http_cache`` shared by the
process means discovery happens once. This is the only module that imports msal.

The app registration's credential is a client secret or a certificate (:class:`ClientCertificate`); every
msal client (sign-in, Connect Outlook, background refresh) is built by :meth:`Identity._msal` with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal
import requests
from sqlite_utils import Database

from app.core import app_errors
from app.core.client_certificate import ClientCertificate
from app.core.leases import acquire_lease, release_lease
from app.core.logs import redact_library_logs
from app.core.metrics import CLIENT_CERTIFICATE_EXPIRY
from app.microsoft.failures import IdentityConfigError, IdentityUnavailable, ReconnectRequired, classify_token_error
from app.microsoft.http import Session

log = logging.getLogger(__name__)

SCOPES = ["User.Read", "Mail.ReadWrite", "Mail.Send"]  # msal adds openid, profile, offline_access
MICROSOFT_AUTHORITY_HOSTS = {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net",
                             "login.microsoftonline.us", "login.partner.microsoftonline.cn"}
EARLY_EXPIRY_SECONDS = 300  # msal itself treats an access token with < 5 min left as expired
TOKEN_LOCK_TTL = 30.0


def _msal_credential(credential: str | ClientCertificate) -> str | dict[str, str]:
    """What msal takes as ``client_credential``: the secret, or the certificate's key and PEM.

    Without a ``thumbprint`` msal (1.35+) computes the certificate's SHA-256 thumbprint and signs the
    assertion with PS256 under ``x5t#S256``, the format Microsoft documents today
    (https://learn.microsoft.com/entra/identity-platform/certificate-credentials); a SHA-1 ``thumbprint``
    would select the older RS256/``x5t`` form msal calls deprecated. msal also sends the certificate as
    ``x5c``, which Entra reads only for Subject Name/Issuer authentication.
    """
    if isinstance(credential, str):
        return credential
    return {"private_key": credential.private_key_pem, "public_certificate": credential.certificate_pem}


class SignInError(Exception):
    """A sign-in redirect could not be redeemed (state mismatch, replay, nonce, error from Entra)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Grant:
    """A connection's stored grant, as msal needs it: whose it is, and its token cache (plain text)."""

    tenant_id: str
    user_id: str
    token_cache: str


class TokenCaches(Protocol):
    """Where connections' msal token caches live (:class:`app.records.connections.TokenCacheStore`
    keeps them encrypted in the connections table); this module never sees SQL or keys."""

    def load(self, connection_id: int) -> Grant | None:
        """The grant of an active connection; None when it is not connected (revoked, wiped, unknown)."""

    def save(self, connection_id: int, token_cache: str) -> None:
        """Store the connection's token cache after msal changed it (a rotated refresh token)."""


@dataclass(frozen=True)
class SignIn:
    """What a redeemed sign-in tells us about the user, plus their serialized token cache."""

    tenant_id: str
    user_id: str
    email: str | None
    display_name: str | None
    scopes: str
    token_cache: str
    directory_roles: tuple[str, ...] = ()
    """Role template ids from the ID token's ``wids`` claim: present only when the app registration asks
    for directory roles (``groupMembershipClaims``), else empty."""


class Identity:
    """The service's app registration as msal sees it."""

    def __init__(self, *, client_id: str, credential: str | ClientCertificate, authority_host: str,
                 verify: str | bool = True, token_caches: TokenCaches,
                 db_factory: Callable[[], Database]) -> None:
        self.client_id = client_id
        self._credential = _msal_credential(credential)
        if isinstance(credential, ClientCertificate):  # the thumbprint is the one the portal lists
            log.info("Identity: authenticating with the certificate %s (thumbprint %s), valid until %s",
                     credential.path, credential.sha1_thumbprint, credential.not_after.isoformat())
            CLIENT_CERTIFICATE_EXPIRY.set(credential.not_after.timestamp())
        self.authority = f"{authority_host.rstrip('/')}/organizations"
        self._instance_discovery = None if urlsplit(authority_host).hostname in MICROSOFT_AUTHORITY_HOSTS else False
        self._token_caches = token_caches
        self._db_factory = db_factory
        self._http_cache: dict = {}
        self._session = Session(verify)  # msal ignores its own `verify` when given a session
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._access_tokens: dict[int, tuple[str, float]] = {}
        redact_library_logs()  # at DEBUG msal logs the authorization code and the PKCE verifier

    def _msal(self, cache: msal.SerializableTokenCache | None = None) -> msal.ConfidentialClientApplication:
        try:
            return msal.ConfidentialClientApplication(
                self.client_id, client_credential=self._credential, authority=self.authority,
                token_cache=cache, http_cache=self._http_cache, instance_discovery=self._instance_discovery,
                http_client=self._session,
            )
        except (requests.RequestException, ValueError) as e:
            raise IdentityUnavailable(f"identity platform discovery failed: {type(e).__name__}") from None

    # -- sign-in ---------------------------------------------------------------------------

    def start_sign_in(self, redirect_uri: str) -> dict[str, Any]:
        """msal's auth-code flow dict (PKCE, nonce, state); keep it server-side until the callback.

        ``prompt=select_account``: Entra asks which account even when the browser is signed in to one,
        so a silent single sign-on never completes a sign-in the person did not see.
        """
        return self._msal().initiate_auth_code_flow(SCOPES, redirect_uri=redirect_uri, prompt="select_account")

    def admin_consent_url(self, redirect_uri: str, state: str) -> str:
        scope = " ".join(f"https://graph.microsoft.com/{scope}" for scope in SCOPES)
        request = requests.Request("GET", f"{self.authority}/v2.0/adminconsent", params={
            "client_id": self.client_id, "scope": scope, "redirect_uri": redirect_uri, "state": state})
        return request.prepare().url

    def finish_sign_in(self, flow: dict[str, Any], auth_response: dict[str, str]) -> SignIn:
        """Redeem the callback; raise :class:`SignInError` for CSRF, replay, nonce or Entra errors."""
        cache = msal.SerializableTokenCache()
        try:
            result = self._msal(cache).acquire_token_by_auth_code_flow(flow, auth_response)
        except ValueError as e:  # state missing or mismatched: msal's CSRF check
            raise SignInError("invalid_state", str(e).split(":")[0]) from None
        except RuntimeError:  # nonce mismatch
            raise SignInError("invalid_nonce", "the sign-in response does not belong to this session") from None
        except (requests.RequestException, msal.exceptions.MsalServiceError) as e:
            raise IdentityUnavailable(f"token endpoint failed: {type(e).__name__}") from None
        if "error" in result:
            error = classify_token_error(result)
            if isinstance(error, IdentityConfigError):
                self._record_config_error(self._db_factory(), error)
                raise error
            raise SignInError(result["error"], result.get("error_description", ""))
        app_errors.clear(self._db_factory())
        claims = result.get("id_token_claims") or {}
        if not claims.get("tid") or not claims.get("oid"):
            raise SignInError("invalid_id_token", "the ID token carries no tenant or object id")
        return SignIn(
            tenant_id=claims["tid"], user_id=claims["oid"], email=claims.get("preferred_username"),
            display_name=claims.get("name"), scopes=result.get("scope", ""), token_cache=cache.serialize(),
            directory_roles=tuple(role for role in claims.get("wids") or () if isinstance(role, str)),
        )

    # -- background tokens -----------------------------------------------------------------

    def access_token(self, connection_id: int, *, force_refresh: bool = False) -> str:
        """A valid access token for ``connection_id``, refreshing (and saving the rotated
        refresh token) when needed. Raises :class:`ReconnectRequired`,
        :class:`IdentityConfigError` or :class:`IdentityUnavailable`.
        """
        cached = self._access_tokens.get(connection_id)
        if cached and not force_refresh and cached[1] > time.time():
            return cached[0]
        with self._lock(connection_id):
            return self._refresh(connection_id, force_refresh)

    def forget(self, connection_id: int) -> None:
        """Drop the in-memory access token (after revocation or disconnect)."""
        self._access_tokens.pop(connection_id, None)

    @staticmethod
    def _record_config_error(db: Database, error: IdentityConfigError) -> None:
        """Remember a problem only an operator can fix; ``/readyz`` and ``/admin`` show it until a
        token request succeeds again."""
        log.error("Identity: the app registration was rejected (%s)", error.code)
        app_errors.record(db, error.code, str(error))

    def _lock(self, connection_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(connection_id, threading.Lock())

    def _refresh(self, connection_id: int, force_refresh: bool) -> str:
        db = self._db_factory()
        lease, owner = f"token:{connection_id}", f"{threading.get_ident()}:{time.time()}"
        deadline = time.monotonic() + TOKEN_LOCK_TTL
        while not acquire_lease(db, lease, owner, TOKEN_LOCK_TTL, time.time()):  # another process refreshes
            if time.monotonic() > deadline:
                raise IdentityUnavailable("timed out waiting for another process to refresh the token")
            time.sleep(0.05)
        try:
            return self._refresh_locked(db, connection_id, force_refresh)
        finally:
            release_lease(db, lease, owner)

    def _refresh_locked(self, db: Database, connection_id: int, force_refresh: bool) -> str:
        grant = self._token_caches.load(connection_id)
        if grant is None:
            raise ReconnectRequired("not_connected")
        cache = msal.SerializableTokenCache()
        cache.deserialize(grant.token_cache)
        client = self._msal(cache)
        account = next((a for a in client.get_accounts()
                        if a.get("home_account_id") == f"{grant.user_id}.{grant.tenant_id}"), None)
        if account is None:
            raise ReconnectRequired("no_cached_account")
        try:
            result = client.acquire_token_silent_with_error(SCOPES, account, force_refresh=force_refresh)
        except (requests.RequestException, msal.exceptions.MsalServiceError) as e:
            raise IdentityUnavailable(f"token refresh failed: {type(e).__name__}") from None
        if cache.has_state_changed:
            self._token_caches.save(connection_id, cache.serialize())
        if not result:
            raise ReconnectRequired("no_refresh_token")
        if "error" in result:
            error = classify_token_error(result)
            if isinstance(error, IdentityConfigError):
                self._record_config_error(db, error)
            raise error
        app_errors.clear(db)
        expires_at = time.time() + int(result.get("expires_in", 0)) - EARLY_EXPIRY_SECONDS
        self._access_tokens[connection_id] = (result["access_token"], expires_at)
        return result["access_token"]
