"""``/{tenant}/v2.0/adminconsent``: an administrator grants the app tenant-wide.

Follows https://learn.microsoft.com/entra/identity-platform/v2-admin-consent: success
redirects with ``admin_consent=True&tenant={tid}&scope=...&state=...``; errors carry
``error``, ``error_description``, ``admin_consent=True`` and ``state`` but no ``tenant``
(Cancel gives ``access_denied`` / AADSTS65004, as observed). ``common`` is refused
(AADSTS90130) because the docs say not to use it. A non-admin is sent back at once with
``access_denied`` / AADSTS90093 ("Calling principal cannot consent due to lack of
permissions"), the message Entra shows such users; the exact redirect is the emulator's choice.
Like :mod:`emulator.authorize_flow`, the views and :meth:`AdminConsentFlow.run` share the logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .aadsts import AadstsError
from .directory import Directory
from .flow import Client, Redirect, Screen, error_redirect, redirect_to, resolve_client, sign_in, split_authority
from .scopes import Scopes, parse_scopes

ENDPOINT = "/v2.0/adminconsent"


@dataclass(frozen=True)
class AdminConsentRequest:
    authority: str
    client: Client
    scope: str
    """The ``scope`` parameter as sent; echoed back on success."""
    scopes: Scopes


class AdminConsentFlow:
    """The admin consent endpoint's decisions for one server base URL."""

    def __init__(self, directory: Directory, base_url: str) -> None:
        self._directory = directory
        self._base_url = base_url

    def begin(self, authority: str, params: Mapping[str, str]) -> AdminConsentRequest | Redirect:
        client = resolve_client(self._directory, authority, params)
        try:
            if authority == "common":
                raise AadstsError(90130, client_id=client.app.client_id)
            scope = params.get("scope", "")
            if not scope:
                raise AadstsError(900144, parameter="scope")
            scopes = parse_scopes(scope, client.app.client_id, client.app.permissions)
        except AadstsError as e:
            return self._error(client, e)
        return AdminConsentRequest(authority, client, scope, scopes)

    def after_sign_in(self, request: AdminConsentRequest, user_id: str) -> Redirect | Screen:
        user, tenant = sign_in(self._directory, request.authority, user_id, request.client.app.client_id)
        if not user.admin:
            return self._error(request.client, AadstsError(90093))
        return Screen("admin_consent", user, tenant)

    def act(self, request: AdminConsentRequest, user_id: str, accept: bool) -> Redirect:
        """The admin pressed Accept or Cancel on the tenant-wide consent page."""
        outcome = self.after_sign_in(request, user_id)
        if isinstance(outcome, Redirect):
            return outcome
        if not accept:
            return self._error(request.client, AadstsError(65004))
        self._directory.grant_consent(outcome.tenant.id, None, request.client.app.client_id, request.scopes.graph)
        return redirect_to(request.client, {
            "admin_consent": "True", "tenant": outcome.tenant.id, "scope": request.scope,
            "state": request.client.state,
        })

    def run(self, url: str, user_id: str, *, accept: bool = True) -> str:
        """Drive the pages as an administrator would; return the final redirect URL."""
        request = self.begin(*split_authority(url, ENDPOINT))
        if isinstance(request, Redirect):
            return request.url
        outcome = self.after_sign_in(request, user_id)
        if isinstance(outcome, Redirect):
            return outcome.url
        return self.act(request, user_id, accept).url

    def _error(self, client: Client, error: AadstsError) -> Redirect:
        return error_redirect(client, error, self._base_url, self._directory.clock.now(), admin_consent="True")
