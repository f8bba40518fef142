"""The HTTPS server: kept-alive connections, whole request bodies, and a stop that hangs up on idle clients."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests


def connect(emulator) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=emulator.ca_file)
    return http.client.HTTPSConnection("127.0.0.1", emulator.port, context=context, timeout=5)


def connection_threads(emulator) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"emulator-{emulator.port}-connection"]


def test_requests_share_one_kept_alive_connection(emulator):
    connection = connect(emulator)
    try:
        sockets = set()
        for method, path in [("GET", "/_emulator/state"), ("POST", "/nowhere"), ("GET", "/_emulator/state")]:
            connection.request(method, path, body=b"ignored" if method == "POST" else None)
            response = connection.getresponse()
            body = response.read()
            assert response.getheader("Connection") is None
            assert int(response.getheader("Content-Length")) == len(body)
            sockets.add(connection.sock)
    finally:
        connection.close()

    assert len(sockets) == 1
    assert [r["status"] for r in emulator.requests()] == [200, 404, 200]


def test_request_bodies_are_read_whole_whatever_their_framing(emulator):
    with requests.Session() as session:
        session.trust_env, session.verify = False, emulator.ca_file
        session.post(f"{emulator.base_url}/nowhere", data=b"x" * 5000)
        session.post(f"{emulator.base_url}/nowhere", data=iter([b"chunked ", b"body"]))
        after = session.get(f"{emulator.base_url}/_emulator/state")

    assert after.status_code == 200
    assert [r["body"] for r in emulator.requests()] == [b"x" * 5000, b"chunked body", b""]


def test_a_bad_content_length_is_400_and_closes_the_connection(emulator):
    context = ssl.create_default_context(cafile=emulator.ca_file)
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"POST /nowhere HTTP/1.1\r\nHost: emulator\r\nContent-Length: lots\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close\r\n" in reply


def test_stop_hangs_up_on_idle_connections_at_once(emulator, alice):
    assert alice.get("/me").status_code == 200  # alice's session keeps its connection open
    silent = socket.create_connection(("127.0.0.1", emulator.port), timeout=5)  # never starts TLS
    try:
        started = time.monotonic()
        emulator.stop()
        elapsed = time.monotonic() - started
        while silent.recv(4096):  # at most a TLS alert, then the end of the stream
            pass
    finally:
        silent.close()

    assert elapsed < 0.2
    assert connection_threads(emulator) == []


def test_stop_lets_a_request_in_flight_finish(emulator, alice):
    emulator.set_graph_latency(300)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(alice.get, "/me")
        while not emulator.faults.peak_in_flight:
            time.sleep(0.01)
        emulator.stop()
        assert in_flight.result().status_code == 200

    assert connection_threads(emulator) == []
