"""The identity platform's HTTP endpoints, for tenant segments ``organizations``, ``common`` or a GUID.

Discovery and keys, the authorize pages, the token endpoint, admin consent, sign-out and the
``/error`` lookup page. The decisions live in :mod:`emulator.authorize_flow`,
:mod:`emulator.admin_consent` and :mod:`emulator.token_grants`; these views only translate
HTTP to and from them.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, Response, jsonify, redirect, render_template, request

from .aadsts import CATALOGUE, AadstsError, Trace, token_error_body
from .admin_consent import AdminConsentFlow
from .authorize_flow import AuthorizeFlow
from .directory import Directory
from .entities import User
from .flow import AuthorizeError, Redirect, resolve_tenant, sign_in_candidates
from .identity_faults import TokenEndpointFault
from .scopes import OIDC_SCOPES
from .token_grants import TokenGrants
from .tokens import TokenIssuer

log = logging.getLogger(__name__)

FAULT_CODES = {429: 90055, 500: 50000}
"""AADSTS codes for injected token-endpoint faults; other 5xx statuses use 90033."""


def create_identity_blueprint(directory: Directory, issuer: TokenIssuer) -> Blueprint:
    """The identity endpoints, served at the server root like ``login.microsoftonline.com``."""
    bp = Blueprint("identity", __name__)
    grants = TokenGrants(directory, issuer)

    @bp.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str):
        try:
            known = resolve_tenant(directory, tenant)
        except AuthorizeError as e:
            return _token_error(directory, e.error)
        return jsonify(_discovery_document(_base_url(), tenant, known.id if known else "{tenantid}"))

    @bp.get("/<tenant>/discovery/v2.0/keys")
    def keys(tenant: str):
        return jsonify({"keys": [directory.signer.jwk()]})

    @bp.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str):
        flow = AuthorizeFlow(directory, issuer, _base_url())
        return _interactive_step(directory, tenant, flow, lambda started, user_id, action: flow.act(
            started, user_id, action, on_behalf_of_org=request.form.get("org") == "1",
            justification=request.form.get("justification", "")))

    @bp.route("/<tenant>/v2.0/adminconsent", methods=["GET", "POST"])
    def adminconsent(tenant: str):
        flow = AdminConsentFlow(directory, _base_url())
        return _interactive_step(directory, tenant, flow,
                                 lambda started, user_id, action: flow.act(started, user_id, action == "accept"))

    @bp.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str):
        fault = directory.injected.take_token_endpoint_fault()
        if fault:
            return _fault_response(directory, fault)
        try:
            resolve_tenant(directory, tenant)
            body = grants.exchange(_token_form(), authority=tenant, base_url=_base_url())
        except AuthorizeError as e:
            return _token_error(directory, e.error)
        except AadstsError as e:
            log.info("Token endpoint: %s for client %s", e.message, request.form.get("client_id"))
            return _token_error(directory, e)
        return _no_store(jsonify(body))

    @bp.get("/<tenant>/oauth2/v2.0/logout")
    def logout(tenant: str):
        """Sign-out; back to ``post_logout_redirect_uri`` only if some app registered it."""
        target = request.args.get("post_logout_redirect_uri")
        if target and any(target in app.redirect_uris for app in directory.apps()):
            return redirect(target)
        return render_template("identity_signed_out.html")

    @bp.get("/error")
    def error_lookup():
        code = request.args.get("code", type=int)
        entry = CATALOGUE.get(code)
        return render_template("identity_error.html", title=f"Error code {code}",
                               message=f"AADSTS{code}: {entry.message}" if entry else "No description for this code.")

    return bp


def _interactive_step(directory: Directory, tenant: str, flow: AuthorizeFlow | AdminConsentFlow,
                      press: Callable[[Any, str, str], Redirect]):
    """One request to authorize or adminconsent: validate, then redirect or show a page.

    GET shows the account picker; each POST carries the original query in a hidden field,
    the chosen account, and the button pressed (``sign_in`` when picking the account).
    """
    query = request.query_string.decode() if request.method == "GET" else request.form.get("request", "")
    try:
        started = flow.begin(tenant, dict(parse_qsl(query, keep_blank_values=True)))
        if isinstance(started, Redirect):
            return _answer(started)
        page = {"app": started.client.app, "request_query": query, "action_url": request.path}
        if request.method == "GET":
            return render_template("identity_sign_in.html", groups=_accounts_by_tenant(directory, tenant), **page)
        user_id, action = request.form.get("user", ""), request.form.get("action", "sign_in")
        outcome = flow.after_sign_in(started, user_id) if action == "sign_in" else press(started, user_id, action)
        if isinstance(outcome, Redirect):
            return _answer(outcome)
        return render_template(f"identity_{outcome.name}.html", screen=outcome,
                               scopes=started.scopes.to_consent(), **page)
    except AuthorizeError as e:
        return _error_page(e.error.message)
    except ValueError as e:
        return _error_page(str(e))


def _answer(outcome: Redirect) -> Response | str:
    """A 302 to the app, or for ``response_mode=form_post`` a page whose form POSTs itself there."""
    if outcome.form_post:
        return render_template("identity_form_post.html", outcome=outcome)
    return redirect(outcome.url)


def _accounts_by_tenant(directory: Directory, tenant: str) -> list[tuple[str, list[User]]]:
    """The sign-in candidates as (tenant name, users) groups, by name; admins first in each."""
    names = {t.id: t.name for t in directory.tenants()}
    groups: dict[str, list[User]] = {}
    for user in sorted(sign_in_candidates(directory, tenant), key=lambda u: (not u.admin, u.email)):
        groups.setdefault(user.tenant_id, []).append(user)
    return sorted(((names[tid], users) for tid, users in groups.items()), key=lambda group: group[0])


def _token_form() -> dict[str, str]:
    """The POSTed form, with HTTP Basic client credentials (client_secret_basic) folded in."""
    form = request.form.to_dict()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        client_id, _, secret = base64.b64decode(value).decode("utf-8", "replace").partition(":")
        form.setdefault("client_id", client_id)
        form.setdefault("client_secret", secret)
    return form


def _discovery_document(base: str, tenant: str, issuer_tenant: str) -> dict:
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
        "scopes_supported": list(OIDC_SCOPES),
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
                             "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                             "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": None,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": urlsplit(base).netloc,
        "rbac_url": "https://pas.windows.net",
    }


def _token_error(directory: Directory, error: AadstsError, status: int | None = None) -> Response:
    trace = Trace.new(directory.clock.now(), request.headers.get("client-request-id"))
    response = jsonify(token_error_body(error, trace, _base_url()))
    response.status_code = status or error.status
    response.headers["x-ms-request-id"] = trace.trace_id
    return _no_store(response)


def _fault_response(directory: Directory, fault: TokenEndpointFault) -> Response:
    response = _token_error(directory, AadstsError(FAULT_CODES.get(fault.status, 90033)), fault.status)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = str(fault.retry_after)
    return response


def _error_page(message: str) -> tuple[str, int]:
    return render_template("identity_error.html", title="Sorry, but we're having trouble signing you in.",
                           message=message), 400


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store, no-cache"
    response.headers["Pragma"] = "no-cache"
    if "client-request-id" in request.headers:
        response.headers["client-request-id"] = request.headers["client-request-id"]
    return response


def _base_url() -> str:
    return request.host_url.rstrip("/")
