"""Runs the real service on loopback: waitress in a thread, plus its workers and scheduler."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urljoin

import requests
import requests.adapters
from flask import Flask
from waitress import create_server, wasyncore

from app import create_app
from app.runtime import Runtime
from app.web.context import services_of
from emulator import Emulator
from handlers.event_delivery import RETRY_DELAYS
from tests.conftest import API_TOKEN
from tests.forms import connect_form


class _LateApp:
    """A WSGI app whose target is set after the server knows its port (the app needs its URL)."""

    target: Any = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


def emulated_app(emulator: Emulator, config: dict[str, Any], public_base_url: str, *,
                 registered_certificate: bytes | None = None) -> tuple[Flask, dict[str, Any]]:
    """The service configured against ``emulator``, reachable at ``public_base_url``, and the emulator's
    demo (seeded with that URL's redirect URIs, and with ``registered_certificate`` uploaded to its app).
    The service authenticates with the demo's secret unless ``config`` names a certificate."""
    demo = emulator.seed_demo([f"{public_base_url}/auth/callback", f"{public_base_url}/admin/consent/callback"],
                              certificate_pem=registered_certificate)
    return create_app({
        **config,
        "PUBLIC_BASE_URL": public_base_url,
        "AZURE_CLIENT_ID": demo["client_id"],
        "AZURE_CLIENT_SECRET": None if config.get("AZURE_CLIENT_CERTIFICATE_PATH") else demo["client_secret"],
        "AZURE_AUTHORITY_HOST": emulator.authority_host,
        "GRAPH_ENDPOINT": emulator.graph_endpoint,
        "REQUESTS_CA_BUNDLE": emulator.ca_file,
    }), demo


class PlatformApi:
    """The records platform's backend: the service's API over HTTP, with the bearer token."""

    def __init__(self, service: ServiceServer) -> None:
        self._service = service
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {API_TOKEN}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._session.request(method, self._service.url(path), timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self._call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._call("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self._call("DELETE", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self._call("PATCH", path, **kwargs)

    def create_record(self, title: str = "Acme vendor file", **fields: Any) -> dict[str, Any]:
        rv = self.post("/api/records", json={"title": title, **fields})
        assert rv.status_code == 201, rv.text
        return rv.json()


class ServiceServer:
    """The service, configured against ``emulator``, served at ``base_url``."""

    def __init__(self, emulator: Emulator, config: dict[str, Any], *, workers: int = 2,
                 scheduler: bool = False, registered_certificate: bytes | None = None,
                 event_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self._late = _LateApp()
        self._server = create_server(self._late, host="127.0.0.1", port=0, threads=8)
        self.base_url = f"http://127.0.0.1:{self._server.effective_port}"
        self.emulator = emulator
        self.app, self.demo = emulated_app(emulator, config, self.base_url,
                                           registered_certificate=registered_certificate)
        self._late.target = self.app
        self.runtime = Runtime(self.app, workers=workers, scheduler=scheduler, event_delays=event_delays)
        self._thread = threading.Thread(target=self._server.run, name="service", daemon=True)

    @property
    def services(self):
        return services_of(self.app)

    def start(self) -> "ServiceServer":
        self._thread.start()
        self.runtime.start()
        return self

    def stop(self) -> None:
        self.runtime.stop(timeout=10)
        self._server.task_dispatcher.shutdown()
        # Close every socket (kept-alive clients too) from the loop's own thread, so the loop ends.
        self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
        self._thread.join(5)

    def url(self, path: str) -> str:
        return urljoin(self.base_url, path)


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connections made from one loopback address (127.0.0.0/8 is all this host's)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


class Browser:
    """A user's browser: keeps the service's cookies and lets the emulator play the Microsoft pages.

    ``address``: the loopback address it connects from, so many people are many clients to the
    service's per-address limits (sign-in starts), as people at their own desks are.
    """

    def __init__(self, service: ServiceServer, *, address: str | None = None) -> None:
        self.service = service
        self.http = requests.Session()
        if address is not None:
            self.http.mount("http://", _FromAddress(address))

    def get(self, path_or_url: str, **kwargs) -> requests.Response:
        return self.http.get(self.service.url(path_or_url), allow_redirects=False, timeout=30, **kwargs)

    def post(self, path_or_url: str, **kwargs) -> requests.Response:
        return self.http.post(self.service.url(path_or_url), allow_redirects=False, timeout=30, **kwargs)

    def sign_in(self, user: str, next_path: str = "/signed-in", **choices) -> requests.Response:
        """Sign in to the service as ``user`` (``/login``, the emulator's pages, the callback); returns the
        callback's answer (302 to ``next_path`` when it worked)."""
        rv = self.get(f"/login?next={quote(next_path)}")
        assert rv.status_code == 302, rv.text
        callback = self.service.emulator.authorize(rv.headers["Location"], self.service.demo["users"][user], **choices)
        return self.get(callback)

    def open_connect(self, record_id: int, user: str, **choices) -> requests.Response:
        """The Connect Outlook page of ``record_id``, signing in as ``user`` first when the browser is not
        signed in; returns the page (or the sign-in's answer, when that did not work)."""
        page = f"/connect/outlook?record_id={record_id}"
        rv = self.get(page)
        if rv.status_code == 302 and rv.headers["Location"].startswith("/login"):
            answer = self.sign_in(user, page, **choices)
            if answer.status_code != 302:
                return answer
            rv = self.get(page)
        return rv

    def start_connect(self, record_id: int, user: str) -> str:
        """Open the Connect Outlook page (signed in as ``user``, unless someone already is) and click its
        button; return the authorize URL the service redirects to."""
        page = self.open_connect(record_id, user)
        assert page.status_code == 200, page.text
        rv = self.post("/connect/outlook", data=connect_form(page.text))
        assert rv.status_code == 302, rv.text
        return rv.headers["Location"]

    def connect(self, record_id: int, user: str, **choices) -> requests.Response:
        """The whole Connect Outlook round trip as ``user``, signing in first when the browser is not;
        returns the service's callback answer (or the page that stopped it: the sign-in's answer, the
        Connect page's refusal)."""
        page = self.open_connect(record_id, user, **choices)
        if page.status_code != 200:
            return page
        rv = self.post("/connect/outlook", data=connect_form(page.text))
        assert rv.status_code == 302, rv.text
        callback = self.service.emulator.authorize(rv.headers["Location"], self.service.demo["users"][user], **choices)
        return self.get(callback)
