"""Connections that hold the server without finishing a request are closed after WEB_CLIENT_TIMEOUT_SECONDS.

Each open connection costs the process a file descriptor and a slot under its connection limit. An idle
keep-alive connection is closed after the timeout, and so is a slowloris, which sends its request's head
a byte at a time so that it is never idle. A slow upload is not cut off: once the head is in, only
silence counts.
"""

from __future__ import annotations

import select
import socket
import time

from tests.drills.harness import API_TOKEN, ServiceProcess

TIMEOUT_SECONDS = 1
TRICKLE_SECONDS = 0.15


def closed_by_server(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(65536) == b"" or closed_by_server(connection)
    except ConnectionError:
        return True


def connect(service: ServiceProcess, sent: bytes = b"") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", service.port), timeout=5)
    connection.sendall(sent)
    return connection


def test_idle_and_slowloris_connections_are_closed_but_a_slow_upload_is_served(emulator, tmp_path):
    service = ServiceProcess(emulator, tmp_path, WEB_CLIENT_TIMEOUT_SECONDS=TIMEOUT_SECONDS).start()
    body = b'{"title": "Slow one"}'  # 21 bytes, 0.15 s apart: 3.2 s
    head = (f"POST /api/records HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slowloris_head = b"GET /healthz HTTP/1.1\r\n" + b"X-Padding: " + b"x" * len(body)
    connections = {
        "idle": connect(service),
        "kept alive after a request": connect(service, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        "slowloris": connect(service),
    }
    upload = connect(service, head)
    try:
        started = time.monotonic()
        for n, byte in enumerate(body):
            if not closed_by_server(connections["slowloris"]):
                connections["slowloris"].sendall(slowloris_head[n:n + 1])
            upload.sendall(bytes([byte]))
            time.sleep(TRICKLE_SECONDS)
            if n == 16:  # 2.5 s in: past the timeout plus the once-a-second check
                still_open = [name for name, connection in connections.items() if not closed_by_server(connection)]
                assert not still_open, f"still open after {time.monotonic() - started:.1f} s: {still_open}"
        upload.settimeout(5)
        answer = upload.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201 "), answer
    finally:
        for connection in [*connections.values(), upload]:
            connection.close()
        service.stop()


def test_a_body_over_the_upload_limit_is_refused_before_it_is_buffered(emulator, tmp_path):
    """Waitress would otherwise spool up to 1 GiB per connection to temporary files before the app's check."""
    service = ServiceProcess(emulator, tmp_path).start()
    head = (f"POST /api/records/1/emails HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_TOKEN}\r\n"
            f"Content-Type: message/rfc822\r\nContent-Length: {500 * 2**20}\r\n\r\n").encode()
    upload = connect(service, head)
    try:
        upload.settimeout(5)
        assert upload.recv(65536).startswith(b"HTTP/1.1 413 "), "refused on its Content-Length, no body sent"
    finally:
        upload.close()
        service.stop()
