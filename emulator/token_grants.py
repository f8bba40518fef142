"""The token endpoint's decisions: client authentication (a secret or a certificate's assertion), code
redemption, refresh.

Each check raises :class:`~emulator.aadsts.AadstsError` with the code Entra uses; the
checks run in the order Entra appears to run them (client first, then the grant).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .aadsts import AadstsError
from .client_assertions import JWT_BEARER, verify_client_assertion
from .directory import Directory
from .entities import App, RefreshToken, User
from .flow import GENERIC_TENANTS
from .scopes import Scopes, parse_scopes
from .signing import b64url_encode
from .tokens import TokenIssuer

CODE_LIFETIME = timedelta(minutes=10)
ISSUED_FORMAT = "%Y-%m-%dT%H:%M:%S.0000000Z"


class TokenGrants:
    """Turns a token request's form into a token response, or raises :class:`AadstsError`."""

    def __init__(self, directory: Directory, issuer: TokenIssuer) -> None:
        self._directory = directory
        self._issuer = issuer
        self._clock = directory.clock

    def exchange(self, form: Mapping[str, str], *, authority: str, base_url: str) -> dict[str, Any]:
        """Handle ``grant_type=authorization_code`` or ``refresh_token`` posted to ``/{authority}/...``."""
        app = self._authenticate_client(form, authority, f"{base_url}/{authority}/oauth2/v2.0/token")
        grant_type = _required(form, "grant_type")
        with self._directory.lock:
            if grant_type == "authorization_code":
                return self._redeem_code(app, form, authority, base_url)
            if grant_type == "refresh_token":
                return self._refresh(app, form, base_url)
        raise AadstsError(70003, grant_type=grant_type)

    def _authenticate_client(self, form: Mapping[str, str], authority: str, token_endpoint: str) -> App:
        """The app the request authenticates as: by ``client_assertion`` (RFC 7523) when it carries one,
        else by ``client_secret``."""
        client_id = _required(form, "client_id")
        app = self._directory.find_app(client_id)
        if app is None:
            raise AadstsError(700016, client_id=client_id, tenant=authority)
        if form.get("client_assertion"):
            if form.get("client_assertion_type") != JWT_BEARER:
                raise AadstsError(900144, parameter="client_assertion_type")
            verify_client_assertion(form["client_assertion"], client_id=client_id, key_credentials=app.key_credentials,
                                    audience=token_endpoint, now=self._clock.now())
            return app
        secret = form.get("client_secret")
        if not secret:
            raise AadstsError(7000218)
        if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            raise AadstsError(7000215, client_id=client_id)
        if app.secret_expires_at <= self._clock.now():
            raise AadstsError(7000222, client_id=client_id)
        return app

    def _redeem_code(self, app: App, form: Mapping[str, str], authority: str, base_url: str) -> dict[str, Any]:
        code = self._directory.find_code(_required(form, "code"))
        if code is None:
            raise AadstsError(70000, parameter="code")
        if code.client_id != app.client_id:
            raise AadstsError(70000, parameter="code", detail=" The code was issued to a different client.")
        if code.redeemed:
            raise AadstsError(54005)
        if self._clock.now() - code.issued_at > CODE_LIFETIME:
            raise AadstsError(70008)
        if authority not in GENERIC_TENANTS and authority != code.tenant_id:
            raise AadstsError(700005)
        redirect_uri = form.get("redirect_uri", "")
        if redirect_uri != code.redirect_uri:
            raise AadstsError(500112, redirect_uri=redirect_uri, expected=code.redirect_uri)
        if code.code_challenge is not None:
            _check_verifier(code.code_challenge, _required(form, "code_verifier"))
        scopes = self._requested(form, app, code.scopes)
        user = self._usable_user(code.user_id)
        self._check_consent(app, code.tenant_id, code.user_id, scopes)
        code.redeemed = True
        return self._issuer.token_response(client_id=app.client_id, user=user, scopes=scopes, base_url=base_url,
                                           nonce=code.nonce, client_info=form.get("client_info") == "1")

    def _refresh(self, app: App, form: Mapping[str, str], base_url: str) -> dict[str, Any]:
        token = self._directory.find_refresh_token(_required(form, "refresh_token"))
        if token is None:
            raise AadstsError(9002313)
        if token.client_id != app.client_id:
            raise AadstsError(70000, parameter="refresh_token",
                              detail=" The refresh token was issued to a different client.")
        injected = self._directory.injected.take_refresh_failure(token.user_id)
        if injected:
            raise AadstsError(injected.code, **{**self._refresh_details(app, token), **injected.details})
        user = self._usable_user(token.user_id)
        self._check_refresh_token_alive(token, user.tokens_valid_from)
        scopes = self._requested(form, app, token.scopes)
        self._check_consent(app, token.tenant_id, token.user_id, scopes)
        token.rotated = True
        return self._issuer.token_response(client_id=app.client_id, user=user, scopes=scopes, base_url=base_url,
                                           client_info=form.get("client_info") == "1")

    def _refresh_details(self, app: App, token: RefreshToken) -> dict[str, str]:
        """What an injected failure's text names (the app, the tenant, the token's issue time), so no
        placeholder of the catalogue is left blank."""
        user = self._directory.user(token.user_id)
        return {"client_id": app.client_id, "tenant": token.tenant_id, "user": user.email,
                "parameter": "refresh_token", "issued": token.issued_at.strftime(ISSUED_FORMAT)}

    def _check_refresh_token_alive(self, token: RefreshToken, valid_from: datetime | None) -> None:
        if valid_from and token.issued_at < valid_from:
            raise AadstsError(50173)
        if token.inactive or self._clock.now() - token.issued_at > self._directory.refresh_token_max_inactive:
            raise AadstsError(700082, issued=token.issued_at.strftime(ISSUED_FORMAT))
        if token.rotated and self._directory.revoke_rotated_refresh_tokens:
            raise AadstsError(70000, parameter="refresh_token", detail=" The refresh token was already used.")

    def _usable_user(self, user_id: str) -> User:
        user = self._directory.user(user_id)
        if user.disabled:
            raise AadstsError(50057)
        return user

    def _requested(self, form: Mapping[str, str], app: App, default: Scopes) -> Scopes:
        text = form.get("scope")
        return parse_scopes(text, app.client_id, app.permissions) if text else default

    def _check_consent(self, app: App, tenant_id: str, user_id: str, scopes: Scopes) -> None:
        if app.client_id in self._directory.tenant(tenant_id).removed_clients:
            raise AadstsError(self._directory.removed_app_code, client_id=app.client_id, tenant=tenant_id)
        if not scopes.graph <= self._directory.granted_scopes(tenant_id, user_id, app.client_id):
            raise AadstsError(65001, client_id=app.client_id)


def _check_verifier(challenge: str, verifier: str) -> None:
    """RFC 7636's S256 check; a code issued without a challenge has nothing to check (a ``code_verifier``
    sent anyway is ignored: Entra documents nothing for that case)."""
    computed = b64url_encode(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    if not hmac.compare_digest(computed.encode(), challenge.encode()):
        raise AadstsError(501481)


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise AadstsError(900144, parameter=name)
    return value
