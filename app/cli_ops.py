"""Operator commands for mailboxes, the queue, events, subscriptions and the background worker."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from app.core.logs import configure_logging
from app.records import events
from app.runtime import Runtime
from app.web.context import get_db, services_of
from subscriptions.reconcile import reconcile
from subscriptions.renewal import renew_one

connections_group = AppGroup("connections", help="Connected mailboxes.")
queue_group = AppGroup("queue", help="The durable work queue.")
subscriptions_group = AppGroup("subscriptions", help="Graph change-notification subscriptions.")
events_group = AppGroup("events", help="Events for the records platform (EVENTS_URL, GET /api/events).")


def _services():
    return services_of(current_app)


@connections_group.command("list")
def connections_list_command() -> None:
    """List connected mailboxes with their status."""
    rows = list(get_db().query("SELECT id, tenant_id, email, status, status_reason FROM connections ORDER BY id"))
    if not rows:
        click.echo("no connections")
    for row in rows:
        reason = f" ({row['status_reason']})" if row["status_reason"] else ""
        click.echo(f"{row['id']:>5}  {row['status']:<18} {row['email'] or '-':<40} {row['tenant_id']}{reason}")


@queue_group.command("stats")
def queue_stats_command() -> None:
    """Show job counts by state and kind, and the age of the oldest pending job."""
    stats = _services().queue.stats()
    click.echo("  ".join(f"{state}={count}" for state, count in stats.by_state.items()))
    for kind, states in sorted(stats.by_kind.items()):
        click.echo(f"  {kind:<10} " + "  ".join(f"{state}={count}" for state, count in states.items()))
    click.echo(f"oldest pending: {stats.oldest_pending_age:.1f} s")


@queue_group.command("retry-dead")
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead jobs (repeatable); default all.")
def queue_retry_dead_command(ids: tuple[int, ...]) -> None:
    """Put dead-lettered jobs back in the queue (after fixing what killed them)."""
    queue = _services().queue
    for job in queue.dead_letters():
        if not ids or job.id in ids:
            click.echo(f"  job {job.id} ({job.kind}): {job.last_error}")
    count = queue.retry_dead(list(ids) or None)
    click.echo(f"re-queued {count} dead job(s)")


@events_group.command("stats")
def events_stats_command() -> None:
    """Show pending, failing and dead events, the delivery lag, and the dead ones."""
    db = get_db()
    stats = events.stats(db)
    click.echo(f"pending={stats.pending} (failing={stats.failing})  dead={stats.dead}  "
               f"oldest pending: {stats.oldest_pending_age:.1f} s")
    for row in events.dead(db):
        click.echo(f"  {row['id']:>7}  {row['webhook_id']}  {row['type']:<30} {row['attempts']} attempt(s): "
                   f"{row['last_error']}")


@events_group.command("retry")
@click.argument("ids", nargs=-1)
def events_retry_command(ids: tuple[str, ...]) -> None:
    """Make dead events pending again (ids or webhook-ids; default: every dead one), to be delivered afresh."""
    count = events.retry_dead(get_db(), list(ids) or None)
    click.echo(f"{count} dead event(s) pending again")


def _subscriptions(connection_id: int | None) -> list[dict]:
    sql = ("SELECT s.id, s.connection_id, s.status, s.expires_at, s.renewed_at, s.created_at, s.last_error, "
           "c.tenant_id FROM subscriptions s JOIN connections c ON c.id = s.connection_id "
           "WHERE s.status IN ('active', 'replaced')")
    if connection_id is not None:
        return list(get_db().query(sql + " AND s.connection_id = ? ORDER BY s.expires_at", [connection_id]))
    return list(get_db().query(sql + " ORDER BY s.expires_at"))


connection_option = click.option("--connection", "connection_id", type=int, help="Only this connection.")


@subscriptions_group.command("list")
@connection_option
def subscriptions_list_command(connection_id: int | None) -> None:
    """List subscriptions with their expiry."""
    rows = _subscriptions(connection_id)
    if not rows:
        click.echo("no subscriptions")
    for row in rows:
        click.echo(f"{row['id']}  connection {row['connection_id']:<5} {row['status']:<9} expires {row['expires_at']}"
                   + (f"  last error: {row['last_error']}" if row["last_error"] else ""))


@subscriptions_group.command("renew")
@connection_option
def subscriptions_renew_command(connection_id: int | None) -> None:
    """Renew active subscriptions now (recreating lost ones), with progress."""
    rows = [row for row in _subscriptions(connection_id) if row["status"] == "active"]
    services = _services()
    outcomes: dict[str, int] = {}
    with click.progressbar(rows, label="renewing", show_pos=True) as bar:
        for row in bar:
            outcome = renew_one(services, row, services.clock())
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    click.echo(", ".join(f"{outcome}: {count}" for outcome, count in outcomes.items()) or "nothing to renew")


@subscriptions_group.command("resync")
@connection_option
def subscriptions_resync_command(connection_id: int | None) -> None:
    """Run a delta reconcile now for active connections, with progress."""
    ids = [connection_id] if connection_id is not None else [
        row["id"] for row in get_db().query("SELECT id FROM connections WHERE status = 'active'")]
    total = 0
    with click.progressbar(ids, label="reconciling", show_pos=True) as bar:
        for cid in bar:
            total += reconcile(_services(), cid)
    click.echo(f"linked or refreshed {total} message(s) across {len(ids)} connection(s)")


@click.command("worker")
@click.option("--threads", type=int, default=None, help="Worker threads (default WORKER_THREADS).")
@click.option("--no-scheduler", is_flag=True, help="Only process the queue; leave renewal to another process.")
@with_appcontext
def worker_command(threads: int | None, no_scheduler: bool) -> None:
    """Run the queue workers and the scheduler (no web server) until SIGINT or SIGTERM."""
    configure_logging(current_app.config["LOG_LEVEL"], current_app.config["LOG_FORMAT"])
    runtime = Runtime(current_app._get_current_object(), workers=threads, scheduler=not no_scheduler)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    runtime.start()
    click.echo("worker running; SIGINT or SIGTERM stops it after the jobs in hand")
    while not stop.wait(1.0):  # wake now and then, so a signal is always handled promptly
        pass
    runtime.stop()


def init_app(app: Flask) -> None:
    for command in (connections_group, queue_group, events_group, subscriptions_group, worker_command):
        app.cli.add_command(command)
