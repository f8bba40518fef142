"""The emulator: one threaded HTTPS server for the identity platform, Graph and the control API.

Tests and sandbox mode create an :class:`Emulator`, start it, and point the service at
``base_url`` (both the authority host and the Graph endpoint) with ``ca_file`` as the CA
bundle. The facade methods below are what tests and the ``/_emulator`` control API call.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import tempfile
import threading
import weakref
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask

from .admin_consent import AdminConsentFlow
from .authorize_flow import AuthorizeFlow
from .clock import Clock
from .control import create_control_blueprint
from .demo import seed_demo
from .directory import Directory
from .faults import Faults
from .graph import create_graph_blueprint
from .identity import create_identity_blueprint
from .mailstore import MailStore
from .requestlog import RecordingMiddleware, RequestLog
from .serving import HttpsServer
from .subscriptions import SubscriptionService
from .tls import create_certificates
from .tokens import TokenIssuer
from .upload_sessions import UploadSessions

log = logging.getLogger(__name__)


class Emulator:
    """The Microsoft identity platform and Graph, on ``https://{host}:{port}``.

    ``directory_options`` go to :class:`~emulator.directory.Directory` (refresh-token
    rotation, inactivity, revocation semantics).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, access_token_lifetime: int = 3600,
                 max_subscription_minutes: int = 10080, request_log_size: int = 10_000,
                 **directory_options: Any) -> None:
        self.host = host
        self.port = port
        self.max_subscription_minutes = max_subscription_minutes
        self.clock = Clock()
        self.directory = Directory(self.clock, access_token_lifetime=access_token_lifetime, **directory_options)
        self.tokens = TokenIssuer(self.directory)
        self.request_log = RequestLog(self.clock, request_log_size)
        tls_dir = Path(tempfile.mkdtemp(prefix="emulator-tls-"))
        self._delete_tls = weakref.finalize(self, shutil.rmtree, tls_dir, ignore_errors=True)
        self.tls = create_certificates(tls_dir, *_subject_names(host))
        self.mail = MailStore(self.clock)
        self.uploads = UploadSessions(self.clock)
        self.faults = Faults(self.clock)
        self.subscriptions = SubscriptionService(self)
        self.app = self._create_app()
        self._server: HttpsServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "Emulator":
        """Serve in a daemon thread; with ``port=0`` the system picks a free port. Runs once."""
        if self._server is not None or not self._delete_tls.alive:
            raise RuntimeError("an emulator starts once: it is running or was stopped")
        self._server = HttpsServer(self.host, self.port, self.app, self.tls.server_context())
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        self.subscriptions.start()
        log.info("Emulator: serving %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and delivering, and delete the certificate files.

        Idle keep-alive connections are closed at once; a request in progress finishes first.
        """
        self.subscriptions.stop()
        if self._server is not None:
            self._server.shutdown()
            self._thread.join()
            self._server.server_close()
            self._server = self._thread = None
        self._delete_tls()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def authority_host(self) -> str:
        """What the service uses as ``AZURE_AUTHORITY_HOST`` (authority = ``{this}/organizations``)."""
        return self.base_url

    @property
    def graph_endpoint(self) -> str:
        """What the service uses as ``GRAPH_ENDPOINT``; Graph lives under ``/v1.0``."""
        return self.base_url

    @property
    def ca_file(self) -> str:
        """The CA certificate to trust (``verify=`` / ``REQUESTS_CA_BUNDLE``)."""
        return str(self.tls.ca_file)

    def requests(self, method: str | None = None, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Every request received, oldest first: method, path, query, headers, body, time, status."""
        return self.request_log.requests(method, path_prefix)

    def clear_requests(self) -> None:
        self.request_log.clear()

    def advance_clock(self, seconds: float) -> datetime:
        """Move the emulator's clock forward (token, code and subscription expiry); returns the new time."""
        self.clock.advance(seconds)
        return self.clock.now()

    # -- directory -------------------------------------------------------------------------------

    def register_app(self, client_id: str | None = None, client_secret: str | None = None,
                     redirect_uris: tuple[str, ...] | list[str] = (), *,
                     directory_role_claims: bool = False,
                     certificate_pem: str | bytes | None = None) -> tuple[str, str]:
        """Register a multi-tenant app; returns (client_id, client_secret). ``directory_role_claims``: its
        tokens carry the user's directory roles (``wids``). ``certificate_pem``: a certificate uploaded to it,
        so client assertions signed with its key authenticate the app as well as the secret does."""
        app = self.directory.register_app(client_id, client_secret, redirect_uris,
                                          directory_role_claims=directory_role_claims,
                                          certificate_pem=certificate_pem)
        return app.client_id, app.client_secret

    def add_tenant(self, name: str, *, tenant_id: str | None = None, user_consent_allowed: bool = True,
                   admin_consent_workflow: bool = True) -> str:
        return self.directory.add_tenant(name, tenant_id=tenant_id, user_consent_allowed=user_consent_allowed,
                                         admin_consent_workflow=admin_consent_workflow).id

    def add_user(self, tenant_id: str, email: str, *, display_name: str | None = None, admin: bool = False,
                 user_id: str | None = None) -> str:
        """Add a user (a Global Administrator when ``admin``) with an empty mailbox; returns the oid."""
        user = self.directory.add_user(tenant_id, email, display_name=display_name, admin=admin, user_id=user_id)
        self.mail.ensure_mailbox(user.id, user.email, user.display_name)
        return user.id

    def revoke_user(self, user_id: str, code: int = 50173) -> None:
        """Break the user's access so the next refresh fails with AADSTS ``code``.

        See :meth:`Directory.revoke_user`. Except for 700082 (an inactive refresh token, which
        leaves Graph access alone) the user's subscriptions are told access was revoked.
        """
        self.directory.revoke_user(user_id, code)
        if code != 700082:
            self.subscriptions.access_revoked(user_id=user_id)

    def remove_app(self, tenant_id: str) -> None:
        """Enterprise applications > Remove in ``tenant_id``: every grant there is gone."""
        self.directory.remove_app(tenant_id)
        self.subscriptions.access_revoked(tenant_id=tenant_id)

    def approve_request(self, request_id: str) -> None:
        """An admin approves a pending admin-consent-workflow request (a tenant-wide grant)."""
        self.directory.approve_request(request_id)

    def deny_request(self, request_id: str) -> None:
        """An admin denies a pending admin-consent-workflow request."""
        self.directory.deny_request(request_id)

    def fail_next_refresh(self, code: int, *, user_id: str | None = None, count: int = 1) -> None:
        self.directory.injected.fail_next_refresh(code, user_id=user_id, count=count)

    def fail_token_endpoint(self, status: int, *, retry_after: int | None = None, count: int = 1) -> None:
        self.directory.injected.fail_token_endpoint(status, retry_after=retry_after, count=count)

    def authorize(self, auth_uri: str, user_id: str, *, accept: bool = True, on_behalf_of_org: bool = False,
                  request_approval: bool = False, justification: str = "") -> str:
        """Act as the browser at ``auth_uri``: sign in as ``user_id`` and press what the flags say.

        Returns the URL the app's redirect URI receives. Runs the same decisions as the pages;
        raises :class:`~emulator.flow.AuthorizeError` where the pages show an error instead.
        """
        flow = AuthorizeFlow(self.directory, self.tokens, self.base_url)
        return flow.run(auth_uri, user_id, accept=accept, on_behalf_of_org=on_behalf_of_org,
                        request_approval=request_approval, justification=justification)

    def admin_consent(self, url: str, user_id: str, accept: bool = True) -> str:
        """Act as the browser at an ``/adminconsent`` URL; returns the final redirect URL."""
        return AdminConsentFlow(self.directory, self.base_url).run(url, user_id, accept=accept)

    def seed_demo(self, redirect_uri: str | list[str], *, certificate_pem: str | bytes | None = None) -> dict[str, Any]:
        """Contoso (admin + user), Fabrikam (no user consent) and an app; see :func:`emulator.demo.seed_demo`."""
        return seed_demo(self, redirect_uri, certificate_pem=certificate_pem)

    # -- Graph half ------------------------------------------------------------------------------

    def deliver_email(self, user_id: str, **fields: Any) -> dict:
        """An inbound email arrives in the user's inbox; returns its Graph JSON.

        ``fields`` are :meth:`~emulator.mailstore.MailStore.deliver`'s, ``attachments`` among them, e.g.
        ``attachments=[{"name": "W-9.pdf", "content": pdf}, {"name": "Order", "item": {"subject": "Order 7"}},
        {"name": "Budget.xlsx", "source_url": "https://contoso.sharepoint.com/budget.xlsx"}]``.
        """
        return self.mail.deliver(user_id, **fields)

    def move_message(self, user_id: str, message_id: str, folder: str) -> dict:
        return self.mail.move(user_id, message_id, folder)

    def trigger_lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification (reauthorizationRequired, subscriptionRemoved, missed)."""
        self.subscriptions.send_lifecycle(subscription_id, event)

    def subscription_list(self) -> list[dict]:
        """Every live subscription of every user and app, as Graph shows them."""
        return [s.to_graph() for s in self.subscriptions.list()]

    def invalidate_sync_state(self, user_id: str | None = None) -> None:
        """Forget the user's delta tokens (everyone's without a user): the next delta call gets 410."""
        self.mail.invalidate_sync_state(user_id)

    def configure_delivery(self, **knobs: Any) -> dict[str, Any]:
        """Change how notifications go out (:class:`~emulator.delivery.DeliveryConfig`); returns every setting.

        For example ``configure_delivery(replay_rate=0.1, reorder=True, drop_rate=0.05, delay_rate=0.2)``.
        Without arguments it only returns the settings.
        """
        return self.subscriptions.delivery.configure(**knobs)

    def add_graph_fault(self, status: int, **options: Any) -> None:
        """Fail matching Graph calls; see :meth:`emulator.faults.Faults.add_rule`."""
        self.faults.add_rule(status, **options)

    def set_graph_latency(self, ms: float | tuple[float, float] | None) -> None:
        self.faults.set_latency(ms)

    def set_graph_limits(self, **limits: float) -> dict[str, float]:
        """Change Outlook's throttling limits (:data:`emulator.faults.LIMITS`); returns them all.

        For example ``set_graph_limits(concurrency_limit=2, rate_limit=100, rate_window=60)``.
        Without arguments it only returns them.
        """
        return self.faults.set_limits(**limits)

    def set_mail_limits(self, **limits: float) -> dict[str, float]:
        """Change the size limits of :class:`~emulator.mail_limits.MailLimits`; returns them all.

        For example ``set_mail_limits(max_message_bytes=100_000)`` makes a send of a larger message fail.
        Without arguments it only returns them.
        """
        self.mail.limits = self.mail.limits.changed(**limits)
        return asdict(self.mail.limits)

    def clear_faults(self) -> None:
        """Drop every injected identity and Graph fault."""
        self.directory.injected.clear()
        self.faults.clear()

    def _create_app(self) -> Flask:
        app = Flask(__name__, static_folder=None)
        app.register_blueprint(create_identity_blueprint(self.directory, self.tokens))
        app.register_blueprint(create_control_blueprint(self))
        app.register_blueprint(create_graph_blueprint(self))
        app.wsgi_app = RecordingMiddleware(app.wsgi_app, self.request_log)
        return app


def _subject_names(host: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) the server certificate must name to be valid for ``host``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return tuple(dict.fromkeys(("localhost", host))), ("127.0.0.1",)
    return ("localhost",), tuple(dict.fromkeys(("127.0.0.1", host)))
