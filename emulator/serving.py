"""The emulator's HTTPS server: threaded, HTTP/1.1 keep-alive, TLS handshakes off the accepting thread.

Werkzeug's development server answers every request with ``Connection: close``, so each call
pays a new TCP connection and TLS handshake (about 20 ms on loopback). This server keeps
connections open: one thread per connection serves its requests in turn, and each response
goes out in a single write with ``Content-Length`` and ``TCP_NODELAY`` set. It reuses
werkzeug's request handler for the WSGI environ and replaces only the part that sends the
response.

Like waitress, it reads the whole request body before calling the app and buffers the whole
response before sending it: the emulator's bodies are small, never streamed, and this way a
response always has a correct length and the next request on the connection always starts
where this one ended.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import ssl
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 120.0
"""Seconds a connection may sit without a request (or a handshake) before the server closes it."""

NO_BODY = (204, 304)


class HttpsServer(BaseWSGIServer):
    """Serves ``app`` on ``https://{host}:{port}``: run :meth:`serve_forever` in a thread, then
    :meth:`shutdown`, join that thread and :meth:`server_close`.

    Werkzeug's own ``ssl_context=`` handshakes inside ``accept()``, on the one serving thread, so
    a client that connects and stays silent would stall every other request. Here the listening
    socket only wraps accepted connections, and each connection's thread does its handshake.
    """

    multithread = True

    def __init__(self, host: str, port: int, app: Any, context: ssl.SSLContext) -> None:
        super().__init__(host, port, app, handler=KeepAliveHandler)
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.ssl_context = context  # werkzeug reads it to set wsgi.url_scheme to https
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._wakeup = socket.socketpair()
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until :meth:`shutdown`, which wakes this loop at once.

        socketserver's loop notices a shutdown only at its next poll (``poll_interval``, unused
        here), which made every stop wait for it.
        """
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wakeup[0], selectors.EVENT_READ)
                while not self._stopping.is_set():
                    if any(key.fileobj is self.socket for key, _ in selector.select()):
                        self._handle_request_noblock()
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return, and wait until it has."""
        self._stopping.set()
        self._wakeup[1].send(b"\0")
        self._stopped.wait()

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """Serve the connection in a thread of its own, remembered until it ends."""
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address),
                                  name=f"emulator-{self.port}-connection", daemon=True)
        with self._lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                del self._connections[request]

    def server_close(self) -> None:
        """Stop listening, hang up on every connection and wait for their threads.

        An idle connection's thread returns at once; one running a request finishes it first.
        """
        super().server_close()
        for end in self._wakeup:
            end.close()
        with self._lock:
            connections = dict(self._connections)
        for connection, thread in connections.items():
            try:
                # The plain socket's shutdown: SSLSocket.shutdown would also drop the TLS
                # state the connection's own thread may be using at this moment.
                socket.socket.shutdown(connection, socket.SHUT_RD)
            except OSError:
                pass  # the connection closed on its own meanwhile
            thread.join()


class KeepAliveHandler(WSGIRequestHandler):
    """Werkzeug's WSGI handler speaking HTTP/1.1 with keep-alive, one buffered write per response."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except OSError as e:  # SSL errors, resets and timeouts alike: nothing to answer
            log.debug("Emulator: TLS handshake with %s failed: %s", self.client_address[0], e)
            return
        super().handle()

    def run_wsgi(self) -> None:
        """Run the app for one request and send its response, keeping the connection open."""
        environ = self.make_environ()
        try:
            body = _request_body(environ)
        except (ValueError, OSError) as e:  # a bad length or chunk, or the client went away
            log.debug("Emulator: bad request body from %s: %s", self.client_address[0], e)
            self.close_connection = True
            self._send("400 Bad Request", [("Content-Type", "text/plain")], b"Bad request body")
            return
        environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
        response: list[Any] = []
        written: list[bytes] = []  # what the app passes to WSGI's legacy write()

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            response[:] = [status, headers]
            return written.append

        try:
            chunks = self.server.app(environ, start_response)
            try:
                content = b"".join([*written, *chunks])
            finally:
                if hasattr(chunks, "close"):
                    chunks.close()
        except Exception:
            log.exception("Emulator: %s %s failed", self.command, self.path)
            self.close_connection = True
            response, content = ["500 Internal Server Error", [("Content-Type", "text/plain")]], b"Internal error"
        self._send(response[0], response[1], content)

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Status line, headers and body in one write; ``Content-Length`` added if the app left it out."""
        code = int(status.split(None, 1)[0])
        extra = [("Server", self.version_string()), ("Date", self.date_time_string())]
        if code not in NO_BODY and "content-length" not in {name.lower() for name, _ in headers}:
            extra.append(("Content-Length", str(len(body))))
        if self.close_connection:
            extra.append(("Connection", "close"))
        lines = [f"{self.protocol_version} {status}", *(f"{k}: {v}" for k, v in [*headers, *extra])]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        log.debug('Emulator: "%s" %d %d', self.requestline, code, len(body))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: every request is in the emulator's request log (``send_error`` still calls this)."""

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("Emulator: %s: " + format, self.client_address[0], *args)


def _request_body(environ: dict[str, Any]) -> bytes:
    """The whole request body, read off the connection (``Content-Length`` or chunked)."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    length = int(environ.get("CONTENT_LENGTH") or 0)  # ValueError when it is not a number
    if length < 0:
        raise ValueError(f"negative Content-Length {length}")
    body = stream.read(length) if length else b""
    if len(body) < length:
        raise ValueError(f"the body ended after {len(body)} of {length} bytes")
    return body
