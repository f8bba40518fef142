"""A record of every request the emulator's server receives, for tests to assert on.

Recording happens in WSGI middleware around the whole Flask app, so identity, Graph and
control requests are all captured, including ones that end in 404 or 500. Nothing is
redacted: tests check exactly what the service sent, tokens included.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.wrappers import Request

from .clock import Clock

MAX_BODY = 64 * 1024


class HeaderDict(dict):
    """A plain dict of headers with lower-case keys that any spelling can look up."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__((key.lower(), value) for key, value in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class RequestLog:
    """The newest ``max_entries`` requests, oldest first, safe to use from any thread."""

    def __init__(self, clock: Clock, max_entries: int = 10_000) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def record(self, request: Request, body: bytes, status: int) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": dict(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)),
            "headers": HeaderDict(request.headers.items()),
            "body": body[:MAX_BODY],
            "time": self._clock.now(),
            "status": status,
        }
        with self._lock:
            self._entries.append(entry)

    def requests(self, method: str | None = None, path_prefix: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests, oldest first, optionally only one method and paths starting with a prefix."""
        with self._lock:
            entries = list(self._entries)
        return [e for e in entries if (method is None or e["method"] == method.upper())
                and (path_prefix is None or e["path"].startswith(path_prefix))]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RecordingMiddleware:
    """WSGI middleware: buffers the request body, runs the app, records the request and status."""

    def __init__(self, app: Callable, log: RequestLog) -> None:
        self._app = app
        self._log = log

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        body = request.get_data()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        status: list[int] = []

        def recording_start_response(status_line: str, headers: list, exc_info: Any = None) -> Callable:
            status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, headers, exc_info)

        response = self._app(environ, recording_start_response)
        self._log.record(request, body, status[-1] if status else 0)
        return response
