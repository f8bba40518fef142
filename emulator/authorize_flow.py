"""``/{tenant}/oauth2/v2.0/authorize``: sign-in, consent and admin approval, decided once.

The HTML views and :meth:`AuthorizeFlow.run` (behind ``Emulator.authorize``) both call
:meth:`AuthorizeFlow.begin`, :meth:`AuthorizeFlow.after_sign_in` and :meth:`AuthorizeFlow.act`,
so tests without a browser go through exactly the decisions a person clicking would.

Who sees what after choosing an account (consent experience docs, msal-consent.md §3):

- everything requested already granted (own or tenant-wide grant), no ``prompt=consent``:
  straight back to the app with a code;
- admins, and users of tenants that allow user consent: the consent page (admins also get
  "Consent on behalf of your organization", unticked);
- other users: "Approval required" (AADSTS90095) when the tenant has the admin consent
  workflow, else "Need admin approval" (AADSTS90094).

Submitting an approval request redirects back with ``error=access_denied`` and an
AADSTS90095 description. Microsoft does not document what the app receives after a request
(msal-consent.md "Could not confirm"); this is the emulator's choice, so the service must
treat it as "waiting for an admin", never as a grant.

``prompt=none`` always answers ``login_required``: the emulator keeps no browser session.
``response_mode`` is ``query`` (what the service uses) or ``form_post`` (what msal recommends: the
browser POSTs ``code`` and ``state`` to the redirect URI); ``fragment`` gets AADSTS70007, since no
client of the emulator reads one.

PKCE is verified whenever the app sends a ``code_challenge`` (S256 only; Entra also takes ``plain``),
but not demanded: every app registered in the emulator is a confidential web client, and Entra
requires PKCE only of single-page apps ("code_challenge: recommended / required for single page
apps", https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#request-an-authorization-code).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from .aadsts import AadstsError
from .directory import Directory
from .flow import Client, Redirect, Screen, error_redirect, redirect_to, resolve_client, sign_in, split_authority
from .scopes import Scopes, parse_scopes
from .tokens import TokenIssuer

ENDPOINT = "/oauth2/v2.0/authorize"
ACCEPT, CANCEL, REQUEST_APPROVAL, RETURN = "accept", "cancel", "request_approval", "return"
PROMPTS_WITHOUT_EFFECT = ("login", "select_account", "create")
RESPONSE_MODES = ("query", "form_post")


@dataclass(frozen=True)
class AuthorizeRequest:
    authority: str
    client: Client
    scopes: Scopes
    code_challenge: str | None
    nonce: str | None
    prompt: str | None


class AuthorizeFlow:
    """The authorize endpoint's decisions for one server base URL."""

    def __init__(self, directory: Directory, issuer: TokenIssuer, base_url: str) -> None:
        self._directory = directory
        self._issuer = issuer
        self._base_url = base_url

    def begin(self, authority: str, params: Mapping[str, str]) -> AuthorizeRequest | Redirect:
        """Validate the request; protocol errors go back to the (registered) redirect URI."""
        client = resolve_client(self._directory, authority, params)
        try:
            return self._parse(authority, client, params)
        except AadstsError as e:
            return self._error(client, e)

    def after_sign_in(self, request: AuthorizeRequest, user_id: str) -> Redirect | Screen:
        """What the browser sees once the user picked an account."""
        user, tenant = sign_in(self._directory, request.authority, user_id, request.client.app.client_id)
        granted = self._directory.granted_scopes(tenant.id, user.id, request.client.app.client_id)
        if request.scopes.graph <= granted and request.prompt != "consent":
            return self._code_redirect(request, user_id)
        return self._screen(request, user_id)

    def act(self, request: AuthorizeRequest, user_id: str, action: str, *, on_behalf_of_org: bool = False,
            justification: str = "") -> Redirect:
        """Apply a button press on the screen :meth:`after_sign_in` showed to ``user_id``."""
        screen = self._screen(request, user_id)
        client_id = request.client.app.client_id
        if (screen.name, action) == ("consent", ACCEPT):
            if on_behalf_of_org and not screen.user.admin:
                raise ValueError("only a Global Administrator can consent on behalf of the organization")
            grantee = None if on_behalf_of_org else screen.user.id
            self._directory.grant_consent(screen.tenant.id, grantee, client_id, request.scopes.graph)
            return self._code_redirect(request, user_id)
        if (screen.name, action) == ("consent", CANCEL):
            return self._error(request.client, AadstsError(65004))
        if (screen.name, action) == ("approval", REQUEST_APPROVAL):
            self._directory.request_approval(screen.tenant.id, screen.user.id, client_id, request.scopes.graph,
                                             justification)
            return self._error(request.client, AadstsError(90095))
        if (screen.name, action) == ("approval", RETURN):
            return self._error(request.client, AadstsError(90095))
        if (screen.name, action) == ("admin_required", RETURN):
            return self._error(request.client, AadstsError(90094))
        raise ValueError(f"{action!r} is not offered on the {screen.name} page")

    def run(self, auth_uri: str, user_id: str, *, accept: bool = True, on_behalf_of_org: bool = False,
            request_approval: bool = False, justification: str = "") -> str:
        """Drive the pages as a person would; return the URL the browser ends up redirected to."""
        request = self.begin(*split_authority(auth_uri, ENDPOINT))
        if isinstance(request, Redirect):
            return request.url
        outcome = self.after_sign_in(request, user_id)
        if isinstance(outcome, Redirect):
            return outcome.url
        action = {
            "consent": ACCEPT if accept else CANCEL,
            "approval": REQUEST_APPROVAL if request_approval else RETURN,
            "admin_required": RETURN,
        }[outcome.name]
        return self.act(request, user_id, action, on_behalf_of_org=on_behalf_of_org,
                        justification=justification).url

    def _screen(self, request: AuthorizeRequest, user_id: str) -> Screen:
        user, tenant = sign_in(self._directory, request.authority, user_id, request.client.app.client_id)
        if user.admin or (tenant.user_consent_allowed and not request.scopes.needs_admin):
            return Screen("consent", user, tenant)
        return Screen("approval" if tenant.admin_consent_workflow else "admin_required", user, tenant)

    def _parse(self, authority: str, client: Client, params: Mapping[str, str]) -> AuthorizeRequest:
        response_type = params.get("response_type")
        if not response_type:
            raise AadstsError(900144, parameter="response_type")
        if response_type != "code":
            raise AadstsError(700051, response_type=response_type)
        if client.response_mode not in RESPONSE_MODES:
            raise AadstsError(70007, detail=" The emulator answers with response_mode=query or form_post.")
        prompt = params.get("prompt") or None
        if prompt == "none":
            raise AadstsError(50058)
        if prompt not in (None, "consent", *PROMPTS_WITHOUT_EFFECT):
            raise AadstsError(901001, prompt=prompt)
        challenge = params.get("code_challenge") or None
        if challenge and params.get("code_challenge_method") != "S256":
            raise AadstsError(9002325, detail=" The emulator accepts code_challenge_method=S256 only.")
        if not params.get("scope"):
            raise AadstsError(900144, parameter="scope")
        scopes = parse_scopes(params["scope"], client.app.client_id, client.app.permissions)
        return AuthorizeRequest(authority, client, scopes, challenge, params.get("nonce"), prompt)

    def _code_redirect(self, request: AuthorizeRequest, user_id: str) -> Redirect:
        code = self._issuer.issue_code(
            client_id=request.client.app.client_id, redirect_uri=request.client.redirect_uri,
            user=self._directory.user(user_id), scopes=request.scopes, code_challenge=request.code_challenge,
            nonce=request.nonce,
        )
        return redirect_to(request.client,
                           {"code": code, "state": request.client.state, "session_state": str(uuid.uuid4())})

    def _error(self, client: Client, error: AadstsError) -> Redirect:
        return error_redirect(client, error, self._base_url, self._directory.clock.now())
