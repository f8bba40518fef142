"""PostgreSQL: the backlog drain with 1, 2 and 4 worker processes, and the acknowledgement cost under gunicorn.

The drain is the end-to-end run's backlog (2,000 replies across 50 mailboxes at once, 50 ms Graph
latency) in the production layout: gunicorn's web processes take Graph's notifications, and
``flask --app wsgi worker`` processes, sharing nothing but the database, fetch and link them; the 4
requests in flight per mailbox are shared by all of them (:mod:`app.core.mailbox_slots`). Graph's
ceiling for that workload is 50 mailboxes × 4 in flight ÷ 50 ms, 4,000 messages per second.

For the scaling figures every worker process has :data:`SCALING_THREADS` threads, so a process adds a
fixed amount of concurrency and the figure to watch is how the drain grows with processes, and the
CPU each process uses (of one core). With the default ``WORKER_THREADS`` (a pool that grows to 32)
one process alone keeps every mailbox at its budget and, with the emulator answering on the same two
cores, saturates the machine, so more processes on this machine only compete for it; that one
process's drain is ``pg_backlog_linked_per_s_default``.

The acknowledgement ratio puts the real receiver, storing into PostgreSQL, under gunicorn (as
``gunicorn.conf.py`` runs it), against a bare view under the same gunicorn, taking turns as
:mod:`bench.ack` does under waitress.

PostgreSQL is the suite's throwaway server (:mod:`tests.postgres`: Debian's packages in a
temporary directory, or ``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from app import create_app
from bench import ack
from bench.e2e import BACKLOG, DRAIN_TIMEOUT, GRAPH_LATENCY_MS, MAILBOXES, linked_times, wait_linked
from bench.load import LoadResult, run_load
from bench.measure import cpu_seconds, free_port, latency_figures, machine_busy_seconds
from bench.stack import (
    REPO,
    WEB,
    WORKER,
    ServiceProcess,
    add_users,
    connect,
    connection_ids,
    prepare_record,
    service_config,
    start_emulator,
    wait_until_settled,
)
from bench.workload import deliver_backlog
from tests.postgres import PostgresServer, test_server

WORKER_PROCESSES = (1, 2, 4)
SCALING_THREADS = 4
WEB_PROCESSES = 2
TAG = "pgbacklog"


def drain(server: PostgresServer, processes: int, workdir: Path, log_dir: Path, *,
          threads: int | None = SCALING_THREADS, name: str | None = None) -> dict[str, Any]:
    """The backlog through ``processes`` worker processes of ``threads`` worker threads each (None:
    the default); linked/s, latency and CPU per process, under keys ending in ``name``."""
    emulator = start_emulator()
    emulator.subscriptions.delivery.config.created_then_updated = False
    url = server.fresh_database()
    port = free_port()
    client_id, client_secret = emulator.register_app(redirect_uris=[f"http://127.0.0.1:{port}/auth/callback"])
    mailboxes = add_users(emulator, emulator.add_tenant("Bench Corp"), MAILBOXES, "bench.example")
    config = {**service_config(emulator, workdir, client_id, client_secret, port),
              "DATABASE_URL": url, "WEB_PROCESSES": str(WEB_PROCESSES),
              **({"WORKER_THREADS": str(threads)} if threads else {})}
    name = name or str(processes)
    prefix = f"pg_backlog_{name}"
    with ExitStack() as stack:
        stack.callback(emulator.stop)
        stack.callback(server.drop, url)
        web = ServiceProcess(config, workdir, log_dir / f"pg-web-{name}.log", command=WEB).start()
        stack.callback(web.stop)
        workers = [ServiceProcess(config, workdir, log_dir / f"pg-worker-{name}-{n}.log", command=WORKER)
                   .start() for n in range(processes)]
        for worker in workers:
            stack.callback(worker.stop)
        for mailbox in mailboxes:
            prepare_record(web, emulator, mailbox)
            connect(web, emulator, mailbox)
        wait_until_settled(web, MAILBOXES)
        for mailbox, connection_id in zip(mailboxes, (connection_ids(web)[m.user_id] for m in mailboxes)):
            mailbox.connection_id = connection_id
        emulator.set_graph_latency(GRAPH_LATENCY_MS)
        throttled = sum(emulator.faults.throttled.values())
        delivered = deliver_backlog(emulator, BACKLOG, mailboxes, TAG)
        cpu_before = [worker.cpu_seconds() for worker in workers] + [web.cpu_seconds(), cpu_seconds(), machine_busy_seconds()]
        started = time.monotonic()
        linked = wait_linked(lambda: linked_times(web, TAG), len(delivered), DRAIN_TIMEOUT)
        wall = time.monotonic() - started
        cpu_after = [worker.cpu_seconds() for worker in workers] + [web.cpu_seconds(), cpu_seconds(), machine_busy_seconds()]
        first = min(d.at for d in delivered.values())
        elapsed = max(linked.values(), default=first) - first
        shares = [(after - before) / wall for before, after in zip(cpu_before, cpu_after)]
        figures = {
            f"{prefix}_messages": len(delivered), f"{prefix}_linked": len(linked),
            f"pg_backlog_linked_per_s_{name}": len(linked) / elapsed if elapsed > 0 else float("nan"),
            f"{prefix}_worker_cpu": shares[:-3], f"{prefix}_web_cpu": shares[-3],
            f"{prefix}_emulator_cpu": shares[-2], f"{prefix}_machine_busy_cores": shares[-1],
            f"{prefix}_throttled_429": sum(emulator.faults.throttled.values()) - throttled,
        }
        figures.update(latency_figures(prefix, [linked[m] - delivered[m].at for m in linked]))
        return figures


@contextmanager
def gunicorn(app: str, config: dict[str, Any], workdir: Path, log_path: Path):
    """``gunicorn APP`` with the project's ``gunicorn.conf.py``; yields its port."""
    port = free_port()
    settings = {**config, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "WEB_PROCESSES": str(WEB_PROCESSES)}
    process = ServiceProcess(settings, workdir, log_path,
                             command=("-m", "gunicorn", app, "--config", str(REPO / "gunicorn.conf.py")))
    process.start()
    try:
        yield port
    finally:
        process.stop()


def ack_turns(server: PostgresServer, workdir: Path, log_dir: Path) -> dict[str, Any]:
    """The receiver on PostgreSQL against the bare view, both under gunicorn, in turns."""
    url = server.fresh_database()
    config = {**ack.service_config(str(workdir / "unused.db"), Fernet.generate_key().decode(), ack.web_threads()),
              "DATABASE_URL": url, "WEB_THREADS": str(ack.web_threads())}
    ack.seed_subscriptions(create_app(config))
    bare: list[LoadResult] = []
    real: list[LoadResult] = []
    try:
        with gunicorn("bench.ack:bare_app()", config, workdir, log_dir / "pg-ack-bare.log") as bare_port, \
                gunicorn("wsgi:app", config, workdir, log_dir / "pg-ack-real.log") as real_port:
            for turn in range(ack.ROUNDS):
                bare.append(run_load(ack.ack_load(bare_port, f"pg-bare-{turn}")))
                real.append(run_load(ack.ack_load(real_port, f"pg-ack-{turn}")))
    finally:
        server.drop(url)
    ratios = [r.rps / b.rps if b.rps else 0.0 for b, r in zip(bare, real)]
    return {**ack.load_figures("pg_bare", bare), **ack.load_figures("pg_ack", real),
            "pg_ack_rounds_ratio": ratios, "pg_ack_ratio": statistics.median(ratios)}


def run(results_dir: Path) -> dict[str, Any]:
    server = test_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            figures: dict[str, Any] = {"pg_web_processes": WEB_PROCESSES, "pg_scaling_threads": SCALING_THREADS}
            for processes in WORKER_PROCESSES:
                workdir = Path(tmp) / f"drain-{processes}"
                workdir.mkdir()
                figures.update(drain(server, processes, workdir, results_dir))
            workdir = Path(tmp) / "drain-default"
            workdir.mkdir()
            figures.update(drain(server, 1, workdir, results_dir, threads=None, name="default"))
            for processes in WORKER_PROCESSES:
                figures[f"pg_backlog_scaling_{processes}"] = (figures[f"pg_backlog_linked_per_s_{processes}"]
                                                              / figures["pg_backlog_linked_per_s_1"])
            figures.update(ack_turns(server, Path(tmp), results_dir))
        return figures
    finally:
        server.stop()


if __name__ == "__main__":
    import json

    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(out), indent=2, default=str))
