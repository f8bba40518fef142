"""``python -m bench.flood``: acknowledgements and ``/healthz`` while a connection flood is held open.

The real receiver runs as :mod:`bench.ack` runs it (its own process, :func:`app.server.build_server`,
seeded subscriptions, genuine notification batches). The same paced loads run twice: on a quiet
server, then while another process holds :data:`IDLE` idle connections (each sent half a request
line) and :data:`SLOWLORIS` more that send a byte of their head every second. Waitress's ``poll``
loop rebuilds its set of descriptors on every turn, in Python, so each turn costs time in
proportion to the connections open: the difference between the two runs is that cost.

Also measured: how long the server takes to accept the flood (until it holds every connection's
descriptor), its resident memory before and during the flood, and the CPU it spends holding the flood
with no requests (the slowloris bytes wake its loop).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from bench.ack import ack_load, load_figures, served, service_config, web_threads
from bench.load import LoadSpec, run_load
from bench.measure import cpu_seconds, rss_mb

IDLE = int(os.environ.get("FLOOD_IDLE", 5000))
SLOWLORIS = int(os.environ.get("FLOOD_SLOWLORIS", 100))
HEALTH_SENDERS = 20
HEALTH_RATE = 50.0  # GET /healthz per second over all senders
QUIET_SECONDS = 5.0  # the window in which the flood's CPU cost is measured


def hold(port: int, idle: int, slowloris: int, pipe) -> None:
    """Process entry point: open the flood, report when it is open, trickle until told to stop."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    connections = []
    started = time.monotonic()
    for _ in range(idle + slowloris):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        connections.append(connection)
    pipe.send(time.monotonic() - started)
    trickling = connections[idle:]
    while not pipe.poll(1.0):
        for connection in trickling:
            connection.sendall(b"x")
    for connection in connections:
        connection.close()


@contextmanager
def flood(port: int, server_pid: int) -> Iterator[dict[str, float]]:
    """Hold the flood open meanwhile; yield how long it took to open and for the server to accept it."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    started = time.monotonic()
    holder = context.Process(target=hold, args=(port, IDLE, SLOWLORIS, child), daemon=True)
    holder.start()
    try:
        connected = parent.recv()
        while _open_fds(server_pid) < IDLE + SLOWLORIS:
            time.sleep(0.01)
        yield {"flood_connect_s": connected, "flood_accepted_s": time.monotonic() - started}
    finally:
        parent.send("stop")
        holder.join(30)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _health(port: int) -> LoadSpec:
    return LoadSpec("127.0.0.1", port, "/healthz", None, HEALTH_SENDERS, 1, 1.0, 5.0, rate=HEALTH_RATE)


def _measure(port: int, prefix: str) -> dict[str, Any]:
    return {**load_figures(f"{prefix}_ack", [run_load(ack_load(port, f"{prefix}-ack", paced=True))]),
            **load_figures(f"{prefix}_health", [run_load(_health(port))])}


def run(results_dir: Path) -> dict[str, Any]:
    log_path = results_dir / "flood-server.log"
    log_path.write_text("")
    figures: dict[str, Any] = {"flood_idle": IDLE, "flood_slowloris": SLOWLORIS, "web_threads": web_threads()}
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        config = service_config(str(Path(tmp) / "flood.db"), Fernet.generate_key().decode(), web_threads())
        with served("real", config, log_path) as (port, pid):
            figures.update(_measure(port, "flood_quiet"))
            figures["flood_quiet_rss_mb"] = rss_mb(pid)
            with flood(port, pid) as timings:
                figures.update(timings)
                figures["flood_rss_mb"] = rss_mb(pid)
                cpu = cpu_seconds(pid)
                time.sleep(QUIET_SECONDS)
                figures["flood_idle_cpu"] = (cpu_seconds(pid) - cpu) / QUIET_SECONDS
                figures.update(_measure(port, "flood"))
                figures["flood_fds"] = _open_fds(pid)
    return figures


if __name__ == "__main__":
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    figures = run(out)
    json.dump(figures, sys.stdout, indent=2)
    print()
