"""Helpers for the Graph tests: signed-in users with a requests session, and a notification receiver.

The fixtures that build them (``world``, ``alice``, ``bob``, ``receiver``, ``make_receiver``) are in
``conftest.py``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from emulator import Emulator
from emulator.scopes import Scopes

MAIL_SCOPES = frozenset({"User.Read", "Mail.ReadWrite", "Mail.Send"})


@dataclass
class GraphUser:
    """A user signed in to the emulator's app, calling Graph with their own token."""

    id: str
    email: str
    token: str
    root: str
    session: requests.Session

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.root + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.call("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.call("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.call("DELETE", path, **kwargs)


class World:
    """One tenant and app registration in a running emulator; users are added on demand."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.client_id, _ = emulator.register_app(redirect_uris=["http://localhost/callback"])
        self.domain = f"t{uuid.uuid4().hex[:8]}.example"
        self.tenant_id = emulator.add_tenant(self.domain)
        self._sessions: list[requests.Session] = []

    def user(self, name: str, scopes: frozenset[str] = MAIL_SCOPES) -> GraphUser:
        """A new user ``name@<this tenant's domain>`` who consented to ``scopes``."""
        emu = self.emulator
        email = f"{name}@{self.domain}"
        user_id = emu.add_user(self.tenant_id, email, display_name=name.title())
        emu.directory.grant_consent(self.tenant_id, user_id, self.client_id, scopes)
        token = self.token(user_id)
        session = self._session()
        session.headers["Authorization"] = f"Bearer {token}"
        return GraphUser(user_id, email, token, f"{emu.base_url}/v1.0", session)

    def refresh(self, user: GraphUser) -> None:
        """Give the user a fresh access token (after the clock moved past the old one's expiry)."""
        user.token = self.token(user.id)
        user.session.headers["Authorization"] = f"Bearer {user.token}"

    def token(self, user_id: str) -> str:
        user = self.emulator.directory.user(user_id)
        response = self.emulator.tokens.token_response(client_id=self.client_id, user=user, base_url="",
                                                       scopes=Scopes(frozenset(), frozenset()))
        return response["access_token"]

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.verify = self.emulator.ca_file
        self._sessions.append(session)
        return session

    def close(self) -> None:
        for session in self._sessions:
            session.close()


@dataclass
class Receiver:
    """A loopback HTTP server playing the service's webhook endpoint.

    ``validation`` picks the handshake answer: "echo" (correct), "encoded", "json", "forbidden",
    "slow" (sleeps ``slow_seconds``). ``script`` holds (status, delay) answers for the next
    notification POSTs; after it runs out, 202 at once. :meth:`stop` cuts every wait short, so
    the emulator's delivery threads are not left waiting on a stopped receiver.
    """

    validation: str = "echo"
    slow_seconds: float = 1.0
    script: list[tuple[int, float]] = field(default_factory=list)
    posts: list[dict] = field(default_factory=list)
    validations: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def items(self) -> list[dict]:
        with self._cond:
            return [item for post in self.posts for item in post["value"]]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Wait until at least ``count`` notification items arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(len(p["value"]) for p in self.posts) < count and time.monotonic() < deadline:
                self._cond.wait(0.05)
        return self.items

    def _app(self, environ: dict, start_response) -> Response:
        request = Request(environ)
        if "validationToken" in request.args:
            return self._validate(request)(environ, start_response)
        with self._cond:
            status, delay = self.script.pop(0) if self.script else (202, 0.0)
        self._stopping.wait(delay)
        with self._cond:
            self.posts.append({**json.loads(request.get_data()), "status": status, "query": dict(request.args)})
            self._cond.notify_all()
        return Response(status=status)(environ, start_response)

    def _validate(self, request: Request) -> Response:
        token = request.args["validationToken"]
        with self._cond:
            self.validations.append({"token": token, "raw": request.query_string.decode(),
                                     "content_type": request.headers.get("Content-Type"), "url": request.base_url})
        if self.validation == "slow":
            self._stopping.wait(self.slow_seconds)
        if self.validation == "forbidden":
            return Response("no", status=403, content_type="text/plain")
        if self.validation == "json":
            return Response(json.dumps(token), content_type="application/json")
        if self.validation == "encoded":
            return Response(request.query_string.decode().split("validationToken=")[1], content_type="text/plain")
        return Response(token, content_type="text/plain; charset=utf-8")
