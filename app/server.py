"""The production WSGI server of ``python -m app``: waitress, sized and guarded against connection floods.

Waitress keeps every open connection in one event loop. Its default loop uses ``select()``, which
cannot watch a file descriptor above 1023: about a thousand idle connections used to raise
"filedescriptor out of range" out of the loop and end the whole process, workers and scheduler
included. Here the loop uses ``poll()``, and the number of connections is bounded by the process's
file-descriptor budget (:func:`raise_fd_limit`, :func:`connection_limit`), so ``accept`` can never
run the process out of descriptors. Should something else use them up, :class:`Server` pauses
accepting for a moment instead of spinning on the error (:meth:`Server.handle_accept`).

Clients that hold a connection without finishing a request are closed after ``client_timeout``
seconds: idle keep-alive connections (waitress's ``channel_timeout``) and, which waitress does not
do by itself, requests whose head is still incomplete that long after its first byte (slowloris,
:class:`Channel`). A request's body is only subject to the idle rule: an upload may be slow, and
waitress reads it into a buffer, holding no request thread, before the application sees it.
"""

from __future__ import annotations

import errno
import logging
import resource
import sys
import time
import warnings
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

from app.web.validation import MAX_SEND_REQUEST_BYTES

log = logging.getLogger(__name__)

# Descriptors kept out of the connections' budget: the SQLite files of every thread (database, WAL
# and shared memory), outgoing Graph, msal and events connections, log files, the sandbox emulator,
# waitress's own wake-up pipe and the temporary files it spills bodies over 512 KiB into.
FD_RESERVE = 256

# How often idle and slow clients are looked for: the timeouts are exact to about this much.
CLEANUP_INTERVAL_SECONDS = 1

# After the process ran out of descriptors (EMFILE) or the kernel out of sockets or memory,
# accepting waits this long: a listening socket with connections pending is always readable,
# and retrying at once would spin the event loop, logging a warning each turn. (It resumes on the
# loop's first turn after the pause, which is at most waitress's one-second loop timeout later.)
ACCEPT_PAUSE_SECONDS = 0.5
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Connections accepted per turn of the event loop (see :meth:`Server.handle_accept`).
ACCEPT_BATCH = 64

# Waitress does all socket I/O on one thread, which has to win the GIL back from the request
# threads after each system call. With Python's default switch interval (5 ms), a request thread
# busy verifying a notification batch can hold every connection's I/O for 5 ms at a time; at 1 ms the
# I/O thread gets it back sooner (the measurements: bench/findings.md, "Switch interval").
SWITCH_INTERVAL = 0.001

# Output a request thread leaves to the I/O thread rather than sending itself. Waitress's default (1,
# since 1.3, when the setting was deprecated) has each request thread send its answer the moment
# it writes it; under 200 keep-alive senders the event loop then turned about 16,000 times a second
# for 140 answers, holding the GIL while every request thread waiting on a commit needed it back,
# and the receiver acknowledged 100-460 deliveries a second. With answers below this size queued
# for the I/O thread (waitress 2.0's way), it turned about 200 times a second and acknowledged
# about 3,200 (bench/findings.md, "Answers sent by the I/O thread"). Larger answers (pages, files)
# are still flushed by the request thread in pieces of this size.
SEND_BYTES = 18_000


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` towards ``wanted`` (never above the hard limit).

    Returns how many files the process may then open, at most ``wanted``. Shells and many service
    managers start processes with a soft limit of 1024 and a much higher hard limit, which an
    unprivileged process may claim.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("Server: could not raise the open-file limit from %d to %d: %s", soft, target, e)
        return soft
    return target


def connection_limit(wanted: int, fd_limit: int) -> int:
    """The most connections the server may hold: ``wanted``, or what ``fd_limit`` leaves after the reserve."""
    return max(1, min(wanted, max(fd_limit - FD_RESERVE, fd_limit // 2)))


class Channel(HTTPChannel):
    """Waitress's connection, remembering when the head of the request it is receiving began."""

    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.time()
        return super().received(data)

    def head_overdue(self, cutoff: float) -> bool:
        """Whether a request's head has been arriving since before ``cutoff`` and is still incomplete."""
        request = self.request
        return request is not None and not request.headers_finished and self.request_started < cutoff


class Server(TcpWSGIServer):
    """Waitress's TCP server that closes slow heads, and survives running out of descriptors."""

    channel_class = Channel
    accept_paused_until = 0.0

    def readable(self) -> bool:
        ready = super().readable()  # runs maintenance() and waitress's connection-limit check
        return ready and time.monotonic() >= self.accept_paused_until

    def handle_accept(self) -> None:
        """Accept the pending connections, up to :data:`ACCEPT_BATCH` at a time.

        Waitress accepts one per turn of its loop, and a turn costs time in proportion to the
        connections open (``poll``'s set is rebuilt each turn): a burst of N connections took N turns.
        """
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit:
                return
            try:
                conn, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in RESOURCE_ERRORS:
                    self._pause_accepting(e)
                    return
                continue  # that connection failed (reset, network error); Linux says to try the next
            try:
                self.set_socket_options(conn)
                self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
            except OSError:  # the client was gone before it could be set up
                conn.close()
            except Exception:
                conn.close()
                raise  # waitress logs it, and handle_close() below keeps the server listening

    def _pause_accepting(self, error: OSError) -> None:
        self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        log.warning("Server: cannot accept connections (%s); pausing %.1f s with %d open",
                    error.strerror, ACCEPT_PAUSE_SECONDS, len(self.active_channels))

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections past channel_timeout
        cutoff = now - self.adj.channel_timeout
        for channel in self.active_channels.values():
            if channel.head_overdue(cutoff):
                channel.will_close = True

    def handle_close(self) -> None:
        """Keep listening: after an error while accepting, waitress would close the listening socket,
        leaving the process running but deaf. Only :meth:`close` (at shutdown) closes it."""
        log.warning("Server: a connection failed while being accepted; still listening")


def build_server(app: Any, host: str, port: int, threads: int, *, max_connections: int,
                 client_timeout: int) -> Server:
    """The production WSGI server, as ``python -m app`` runs it (the benchmarks use it too).

    It raises the open-file limit to what ``max_connections`` needs, holds as many connections as
    that limit then allows, and sets the interpreter's thread switch interval
    (:data:`SWITCH_INTERVAL`). Waitress buffers a body before the application sees it (in a
    temporary file past 512 KiB), by default up to 1 GiB: a body over the largest the application
    accepts anywhere (a send with its attachments) is refused by waitress itself (413, as plain
    text), before it can fill the disk. Smaller routes are held to their own limit by Flask.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)
    fd_limit = raise_fd_limit(max_connections + FD_RESERVE)
    limit = connection_limit(max_connections, fd_limit)
    if limit < max_connections:
        log.warning("Server: the open-file limit (%d) allows %d connections, not %d; raise the hard limit "
                    "(ulimit -Hn, or LimitNOFILE= for systemd)", fd_limit, limit, max_connections)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "send_bytes will be removed", DeprecationWarning)
        adjustments = Adjustments(
            host=host, port=port, threads=threads, ident="outlook-integration", asyncore_use_poll=True,
            connection_limit=limit, channel_timeout=client_timeout, cleanup_interval=CLEANUP_INTERVAL_SECONDS,
            max_request_body_size=MAX_SEND_REQUEST_BYTES, send_bytes=SEND_BYTES)
    if len(adjustments.listen) > 1:
        log.warning("Server: HOST %s has several addresses; listening on the first only", host)
    return Server(app, map={}, adj=adjustments)
