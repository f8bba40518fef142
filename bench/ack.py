"""Acknowledgement path: the real receiver against a bare Flask view, under the same waitress.

Each server runs in a process of its own, built the way ``python -m app`` builds its server
(:func:`app.server.build_server` with ``WEB_THREADS`` threads). Both get the same loads, each
request a batch of genuine notifications whose message ids were never seen before, so every
request is stored:

- 200 keep-alive senders in a closed loop (two client processes): throughput. The servers take
  turns, :data:`ROUNDS` times each, and the ratio is the median of the rounds' ratios: identical
  runs on this 2-core VM differ by a quarter, and turns spread that drift over both. Closed-loop
  latency is mostly queueing: with every sender always waiting on one request, the mean is 200
  divided by the throughput (Little's law), over 100 ms even for the bare view;
- 200 keep-alive senders paced to 200 POSTs per second together: latency at a load both servers
  carry, which is what a Graph delivery sees.

The receiver runs without worker threads: this measures the acknowledgement alone. What the
workers do later with the inbox (move it into the queue, dropping duplicates) is timed at the end.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from app.web.context import services_of
from bench.load import (
    LoadResult,
    LoadSpec,
    NotificationBodies,
    client_capacity,
    run_load,
)

TENANT = "b3c4d5e6-0000-4000-8000-00000000be4c"
SUBSCRIPTIONS = 50  # one per mailbox, as in the end-to-end run
BATCH = 10  # notifications per POST; Graph groups them (the end-to-end bursts averaged about 17)
SENDERS = 200
CLIENT_PROCESSES = 2
WARMUP = 2.0
DURATION = 8.0
# Latency at a steady load both servers carry: 200 POSTs/s (2,000 notifications/s, twenty times
# the end-to-end rate), from as many senders as the closed loop.
PACED_RATE = 200.0
PACED_SENDERS = SENDERS
PATH = "/webhooks/graph"
ROUNDS = 3  # closed-loop turns per server


def web_threads() -> int:
    """The request threads ``python -m app`` would use here (``WEB_THREADS``, else its default)."""
    from app.core.config import SETTINGS_BY_NAME

    return int(os.environ.get("WEB_THREADS") or SETTINGS_BY_NAME["WEB_THREADS"].default)


def subscriptions() -> tuple[tuple[str, str], ...]:
    """(id, clientState) of the subscriptions the senders' notifications come from."""
    return tuple((f"7f1c3f52-5b3a-4b0e-9d51-{i:012d}", f"bench-client-state-{i:02d}-{'x' * 44}")
                 for i in range(SUBSCRIPTIONS))


def service_config(database: str, key: str, threads: int) -> dict[str, Any]:
    """A non-sandbox configuration whose Graph and identity URLs are never called on this path."""
    return {"DATABASE_PATH": database, "TOKEN_ENCRYPTION_KEYS": key, "SECRET_KEY": "bench", "API_TOKEN": "bench",
            "AZURE_CLIENT_ID": "bench-client", "AZURE_CLIENT_SECRET": "bench-secret", "WEB_THREADS": threads,
            "GRAPH_ENDPOINT": "https://127.0.0.1:9", "AZURE_AUTHORITY_HOST": "https://127.0.0.1:9"}


def seed_subscriptions(app) -> None:
    """A tenant, one connection per subscription, and the subscriptions with encrypted clientStates (in SQL
    both engines take)."""
    from app.core.db import store_location, thread_db
    from app.core.timeutil import iso

    db = thread_db(store_location(app.config))
    cipher = services_of(app).cipher
    now = datetime.now(timezone.utc)
    later = iso(now + timedelta(days=3))
    db.execute("INSERT INTO tenants (id, created_at, updated_at) VALUES (?, ?, ?)", [TENANT, iso(now), iso(now)])
    for number, (subscription_id, client_state) in enumerate(subscriptions(), start=1):
        db.execute("INSERT INTO connections (id, tenant_id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                   [number, TENANT, f"user-{number}", iso(now), iso(now)])
        db.execute(
            "INSERT INTO subscriptions (id, connection_id, resource, change_type, client_state, expires_at,"
            " routable_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [subscription_id, number, f"/users/user-{number}/messages", "created,updated,deleted",
             cipher.encrypt(client_state), later, later, iso(now), iso(now)])


def bare_app():
    """The baseline: a Flask app whose view answers 202 (and whose /healthz says it is up)."""
    from flask import Flask, Response

    app = Flask("bare")

    @app.post(PATH)
    def accept():
        return Response(status=202)

    @app.get("/healthz")  # for a harness that waits for the server to answer
    def healthz():
        return Response(status=200)

    return app


def serve(kind: str, config: dict[str, Any], log_path: str, port_pipe) -> None:
    """Process entry point: build the app, serve it with waitress as ``python -m app`` does."""
    from app.core.config import SETTINGS_BY_NAME
    from app.core.logs import configure_logging
    from app.server import build_server

    sys.stderr = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    configure_logging("INFO", "text")
    if kind == "real":
        from app import create_app

        app = create_app(config)
        seed_subscriptions(app)
    else:
        app = bare_app()
    server = build_server(app, "127.0.0.1", 0, config["WEB_THREADS"],
                          max_connections=SETTINGS_BY_NAME["WEB_MAX_CONNECTIONS"].default,
                          client_timeout=SETTINGS_BY_NAME["WEB_CLIENT_TIMEOUT_SECONDS"].default)
    logging.getLogger("bench").info("Serving the %s app on port %s", kind, server.effective_port)
    port_pipe.send(server.effective_port)
    server.run()


@contextmanager
def served(kind: str, config: dict[str, Any], log_path: Path) -> Iterator[tuple[int, int]]:
    """Run ``serve`` in a fresh process; yield its port and process id; terminate it afterwards."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(kind, config, str(log_path), child), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError(f"the {kind} server did not start (see {log_path})")
        yield parent.recv(), process.pid
    finally:
        process.terminate()
        process.join(10)


def ack_load(port: int, prefix: str, *, paced: bool = False) -> LoadSpec:
    bodies = NotificationBodies(subscriptions(), TENANT, BATCH, prefix=f"{prefix}{os.getpid()}-{port}")
    if paced:
        return LoadSpec("127.0.0.1", port, PATH, bodies, PACED_SENDERS, CLIENT_PROCESSES, WARMUP, DURATION,
                        rate=PACED_RATE)
    return LoadSpec("127.0.0.1", port, PATH, bodies, SENDERS, CLIENT_PROCESSES, WARMUP, DURATION)


def load_figures(prefix: str, results: list[LoadResult]) -> dict[str, Any]:
    """Medians of the runs' rates and latencies; sums of their failures."""
    return {f"{prefix}_rps": statistics.median(r.rps for r in results),
            f"{prefix}_p50_ms": statistics.median(r.p50_ms for r in results),
            f"{prefix}_p99_ms": statistics.median(r.p99_ms for r in results),
            f"{prefix}_rounds_rps": [r.rps for r in results],
            f"{prefix}_non_2xx": sum(r.non_2xx for r in results),
            f"{prefix}_starved_senders": sum(r.starved for r in results),
            f"{prefix}_reconnects": sum(r.reconnects for r in results),
            f"{prefix}_total_ok": sum(r.total_ok for r in results),
            f"{prefix}_over_3s": sum(r.over_3s for r in results)}


def _drain(database: str) -> dict[str, Any]:
    """Move the receiver's inbox into the queue as the workers would, timed."""
    from app.core.queue import JobQueue

    queue = JobQueue(database)
    started = time.perf_counter()
    while queue.drain_inbox():
        pass
    elapsed = time.perf_counter() - started
    jobs = queue.db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    queue.disconnect()
    return {"ack_rows_inserted": jobs, "ack_drain_s": elapsed,
            "ack_drain_jobs_per_s": jobs / elapsed if elapsed else 0.0}


def run(results_dir: Path) -> dict[str, Any]:
    """Client capacity, then the bare view and the real receiver in turns; their figures side by side."""
    threads = web_threads()
    log_path = results_dir / "ack-servers.log"
    log_path.write_text("")
    figures: dict[str, Any] = {"ack_senders": SENDERS, "ack_batch": BATCH, "web_threads": threads,
                               "ack_paced_rate": PACED_RATE, "ack_paced_senders": PACED_SENDERS, "ack_rounds": ROUNDS}
    figures["client_capacity_rps"] = client_capacity(ack_load(0, "capacity")).rps
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmp:
        config = service_config(str(Path(tmp) / "ack.db"), Fernet.generate_key().decode(), threads)
        with served("bare", config, log_path) as (bare_port, _), served("real", config, log_path) as (real_port, _):
            bare: list[LoadResult] = []
            real: list[LoadResult] = []
            for turn in range(ROUNDS):
                bare.append(run_load(ack_load(bare_port, f"bare-closed-{turn}")))
                real.append(run_load(ack_load(real_port, f"ack-closed-{turn}")))
            figures.update(load_figures("bare_paced", [run_load(ack_load(bare_port, "bare-paced", paced=True))]))
            figures.update(load_figures("ack_paced", [run_load(ack_load(real_port, "ack-paced", paced=True))]))
        figures.update({**load_figures("bare", bare), **load_figures("ack", real)})
        figures["ack_rounds_ratio"] = [r.rps / b.rps if b.rps else 0.0 for b, r in zip(bare, real)]
        figures["ack_ratio"] = statistics.median(figures["ack_rounds_ratio"])
        figures["ack_paced_p99_ratio"] = figures["ack_paced_p99_ms"] / figures["bare_paced_p99_ms"]
        figures["ack_rows_expected"] = (figures["ack_total_ok"] + figures["ack_paced_total_ok"]) * BATCH
        figures.update(_drain(config["DATABASE_PATH"]))
    return figures


if __name__ == "__main__":
    import json

    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(out), indent=2))
