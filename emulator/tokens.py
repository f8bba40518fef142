"""Minting: authorization codes, access tokens, id_tokens, refresh tokens and the token response.

Access tokens look like Graph's (v1.0 shape: ``aud`` = Graph's app id, ``scp``, ``appid``,
``tid``, ``oid``) and carry every Graph scope the user has consented to for the app, as
Entra's do. id_tokens follow the v2.0 claims reference: ``sub`` is pairwise (differs per app,
unlike ``oid``), ``nonce`` is exactly what the authorize request carried.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

from .directory import Directory
from .entities import AuthCode, RefreshToken, User
from .scopes import GRAPH_APP_ID, Scopes, format_scope
from .signing import b64url_encode, b64url_json

ID_TOKEN_LIFETIME = timedelta(hours=1)

GLOBAL_ADMINISTRATOR_ROLE = "62e90394-69f5-4237-9190-012177145e10"
DEFAULT_USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"


class TokenIssuer:
    """Creates codes and tokens and records them in the :class:`Directory`."""

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._clock = directory.clock

    def issue_code(self, *, client_id: str, redirect_uri: str, user: User, scopes: Scopes,
                   code_challenge: str | None, nonce: str | None) -> str:
        code = AuthCode(secrets.token_urlsafe(48), client_id, redirect_uri, user.id, user.tenant_id, scopes,
                        code_challenge, nonce, self._clock.now())
        self._directory.add_code(code)
        return code.code

    def token_response(self, *, client_id: str, user: User, scopes: Scopes, base_url: str,
                       nonce: str | None = None, client_info: bool = False) -> dict[str, Any]:
        """The JSON of a successful token request.

        A refresh token only with ``offline_access``, an id_token only with ``openid``, and
        ``client_info`` only when the request asked for it (``client_info=1``), as in Entra.
        """
        granted = self._directory.granted_scopes(user.tenant_id, user.id, client_id)
        lifetime = self._directory.access_token_lifetime
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": format_scope(granted, scopes.oidc),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self._access_token(client_id, user, granted),
        }
        if "offline_access" in scopes.oidc:
            response["refresh_token"] = self._refresh_token(client_id, user, scopes)
        if "openid" in scopes.oidc:
            response["id_token"] = self._id_token(client_id, user, base_url, nonce)
        if client_info:
            response["client_info"] = b64url_json({"uid": user.id, "utid": user.tenant_id})
        return response

    def _access_token(self, client_id: str, user: User, scopes: frozenset[str]) -> str:
        now = self._clock.now()
        app = self._directory.find_app(client_id)
        token_id = b64url_encode(uuid.uuid4().bytes)
        iat = int(now.timestamp())
        claims = {
            "aud": GRAPH_APP_ID,
            "iss": f"https://sts.windows.net/{user.tenant_id}/",
            "iat": iat,
            "nbf": iat,
            "exp": iat + self._directory.access_token_lifetime,
            "app_displayname": app.display_name if app else client_id,
            "appid": client_id,
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.id,
            "scp": " ".join(sorted(scopes)),
            "sub": _pairwise_subject(user.id, GRAPH_APP_ID),
            "tid": user.tenant_id,
            "unique_name": user.email,
            "upn": user.email,
            "uti": token_id,
            "ver": "1.0",
        }
        self._directory.record_access_token(token_id, now)
        return self._directory.signer.sign(claims)

    def _id_token(self, client_id: str, user: User, base_url: str, nonce: str | None) -> str:
        iat = int(self._clock.timestamp())
        claims = {
            "aud": client_id,
            "iss": f"{base_url}/{user.tenant_id}/v2.0",
            "iat": iat,
            "nbf": iat,
            "exp": iat + int(ID_TOKEN_LIFETIME.total_seconds()),
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.email,
            "sub": _pairwise_subject(user.id, client_id),
            "tid": user.tenant_id,
            "uti": b64url_encode(uuid.uuid4().bytes),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        app = self._directory.find_app(client_id)
        if app is not None and app.directory_role_claims:
            claims["wids"] = directory_roles(user)
        return self._directory.signer.sign(claims)

    def _refresh_token(self, client_id: str, user: User, scopes: Scopes) -> str:
        token = RefreshToken("1.A" + secrets.token_urlsafe(96), client_id, user.id, user.tenant_id, scopes,
                             self._clock.now())
        self._directory.add_refresh_token(token)
        return token.token


def directory_roles(user: User) -> list[str]:
    """The ``wids`` claim: role template ids of the user's directory roles, the default user role included
    (https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference)."""
    return [GLOBAL_ADMINISTRATOR_ROLE, DEFAULT_USER_ROLE] if user.admin else [DEFAULT_USER_ROLE]


def _pairwise_subject(user_id: str, client_id: str) -> str:
    return b64url_encode(hashlib.sha256(f"{user_id}|{client_id}".encode()).digest())
