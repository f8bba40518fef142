"""Pieces the interactive flows share: outcomes, tenant and client checks, redirects.

The authorize and admin-consent flows decide what a browser sees next. Their outcome is a
:class:`Redirect` (to the app's redirect URI), a :class:`Screen` (a page the user acts on),
or an :class:`AuthorizeError` shown on the identity platform's own error page. Errors are
only ever redirected to a redirect URI registered for the app, as Entra does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .aadsts import AadstsError, Trace, redirect_error_params
from .directory import Directory
from .entities import App, Tenant, User

GENERIC_TENANTS = ("organizations", "common")


class AuthorizeError(Exception):
    """An error shown on the identity platform's page instead of being redirected."""

    def __init__(self, error: AadstsError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Redirect:
    """Back to the app's ``uri`` with ``params``: in the query string, or (``form_post``) in a form the
    browser POSTs there, as Entra does for ``response_mode=form_post``
    (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow#successful-response)."""

    uri: str
    params: tuple[tuple[str, str], ...] = ()
    form_post: bool = False

    @property
    def url(self) -> str:
        """``uri`` with ``params`` added to its query string: where a query-mode browser goes."""
        parts = urlsplit(self.uri)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(self.params)
        return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True)
class Screen:
    """A page the signed-in user must act on: consent, approval, admin_required or admin_consent."""

    name: str
    user: User
    tenant: Tenant


@dataclass(frozen=True)
class Client:
    """The app, its validated redirect URI, the request's ``state`` and how the answer travels."""

    app: App
    redirect_uri: str
    state: str | None
    response_mode: str = "query"


def resolve_client(directory: Directory, authority: str, params: Mapping[str, str]) -> Client:
    """Check the tenant segment, ``client_id`` and ``redirect_uri``; raise :class:`AuthorizeError`."""
    resolve_tenant(directory, authority)
    client_id = params.get("client_id", "")
    if not client_id:
        raise AuthorizeError(AadstsError(900144, parameter="client_id"))
    app = directory.find_app(client_id)
    if app is None:
        raise AuthorizeError(AadstsError(700016, client_id=client_id, tenant=authority))
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        raise AuthorizeError(AadstsError(50011, redirect_uri=redirect_uri, client_id=client_id))
    return Client(app, redirect_uri, params.get("state"), params.get("response_mode") or "query")


def resolve_tenant(directory: Directory, authority: str) -> Tenant | None:
    """The tenant a path segment names; None for ``organizations`` and ``common``."""
    if authority in GENERIC_TENANTS:
        return None
    try:
        return directory.tenant(authority)
    except KeyError:
        raise AuthorizeError(AadstsError(90002, tenant=authority)) from None


def sign_in_candidates(directory: Directory, authority: str) -> list[User]:
    """The accounts offered on the sign-in page: one tenant's, or everyone's for the generic segments."""
    tenant = resolve_tenant(directory, authority)
    return directory.users(tenant.id if tenant else None)


def sign_in(directory: Directory, authority: str, user_id: str, client_id: str) -> tuple[User, Tenant]:
    """The account that signs in, or :class:`AuthorizeError` (not in this tenant, disabled)."""
    tenant = resolve_tenant(directory, authority)
    try:
        user = directory.user(user_id)
    except KeyError:
        raise AuthorizeError(AadstsError(50020, user=user_id, tenant=authority, client_id=client_id)) from None
    if tenant and user.tenant_id != tenant.id:
        raise AuthorizeError(AadstsError(50020, user=user.email, tenant=tenant.id, client_id=client_id))
    if user.disabled:
        raise AuthorizeError(AadstsError(50057))
    return user, directory.tenant(user.tenant_id)


def redirect_to(client: Client, params: Mapping[str, str | None]) -> Redirect:
    """Back to the client's redirect URI with ``params`` (None values left out), in its response mode."""
    return Redirect(client.redirect_uri, tuple((key, value) for key, value in params.items() if value is not None),
                    form_post=client.response_mode == "form_post")


def error_redirect(client: Client, error: AadstsError, base_url: str, now: datetime,
                   **extra: str) -> Redirect:
    """Send an error to the app: ``error``, ``error_description``, ``error_uri``, extras, ``state``."""
    params = {**redirect_error_params(error, Trace.new(now), base_url), **extra, "state": client.state}
    return redirect_to(client, params)


def split_authority(url: str, endpoint: str) -> tuple[str, dict[str, str]]:
    """(tenant segment, query parameters) of a URL the app built for ``/{tenant}{endpoint}``."""
    parts = urlsplit(url)
    authority, _, rest = parts.path.lstrip("/").partition("/")
    if "/" + rest != endpoint:
        raise ValueError(f"{url} is not a /{{tenant}}{endpoint} URL")
    return authority, dict(parse_qsl(parts.query, keep_blank_values=True))
