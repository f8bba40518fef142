"""An HTTP load generator: many keep-alive senders spread over client processes.

Each sender owns one HTTP/1.1 connection. In a closed loop it sends its next request as soon as
the answer to the previous one is in, so the server sets the pace (throughput). In an open loop
the senders together send ``rate`` requests per second, whatever the server does (latency at a
given load). Senders are asyncio protocols that write
pre-built request bytes and parse only the status line and ``Content-Length``: a request costs the
client far less than a Flask request costs the server. :func:`client_capacity` measures how much
the client can drive against a server that does nothing, to show it is not the bottleneck.

Latency is measured per request from the write to the last byte of the answer. A request still
unanswered when the run ends counts with the time it has waited so far, so a starved sender shows
up in the high percentiles instead of vanishing from them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import socket
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from bench.measure import percentile

START_DELAY = 1.5  # seconds for every client process to be up before the common start time
GRACE = 2.0  # seconds after the window to let answers in flight arrive
ACK_DEADLINE = 3.0  # Graph counts a delivery not acknowledged within 3 s as failed


@dataclass(frozen=True)
class NotificationBodies:
    """Graph-shaped notification batches, each item with a message id never used before.

    ``subscriptions`` are ``(subscription id, clientState)`` pairs; items go round-robin over them.
    ``prefix`` keeps ids unique across client processes and runs, so every request really inserts.
    The JSON is built once with a placeholder for the request's sequence number, which keeps the
    client's cost per request to a byte replace.
    """

    subscriptions: tuple[tuple[str, str], ...]
    tenant_id: str
    batch: int = 10
    prefix: str = "bench"

    def templates(self) -> list[bytes]:
        """One template per group of ``batch`` subscriptions, so requests cover all of them in turn."""
        groups = max(1, len(self.subscriptions) // self.batch)
        return [self._template(group * self.batch) for group in range(groups)]

    def _template(self, first: int) -> bytes:
        items = []
        for i in range(self.batch):
            number = (first + i) % len(self.subscriptions)
            subscription_id, client_state = self.subscriptions[number]
            message_id = graph_message_id(f"{self.prefix}-{SEQ.decode()}-{i}")
            resource = f"Users/{USER_ID_PREFIX}{number:012d}/Messages/{message_id}"
            items.append({
                "subscriptionId": subscription_id, "clientState": client_state, "tenantId": self.tenant_id,
                "changeType": "created", "subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
                "resource": resource,
                "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": resource,
                                 "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"', "id": message_id},
            })
        return json.dumps({"value": items}).encode()


# Graph message ids are about 150 characters of base64 (mailbox, folder and item parts); notifications
# carry each one twice. The bench's end with a unique part so every notification is new work.
GRAPH_MESSAGE_ID_PREFIX = ("AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAi"
                           "IsqMbYjsT5e-T7KzowPTAAAAAAEMAAAiIsqMbYjsT5e-T7KzowPTAAAYbv")
USER_ID_PREFIX = "5b1e3f0c-2a9d-4c7e-8f61-"


def graph_message_id(unique: str) -> str:
    return f"{GRAPH_MESSAGE_ID_PREFIX}{unique}="


SEQ = b"@SEQ@"


@dataclass(frozen=True)
class LoadSpec:
    """Who to hit, with what, how hard and for how long."""

    host: str
    port: int
    path: str
    bodies: NotificationBodies | None  # None: GET requests without a body
    senders: int = 200
    processes: int = 2
    warmup: float = 2.0
    duration: float = 8.0
    rate: float | None = None  # requests per second over all senders (open loop); None: closed loop


@dataclass
class LoadResult:
    """What the senders saw during the measurement window."""

    requests: int  # answered within the window
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    starved: int = 0  # senders that got no answer at all within the window
    reconnects: int = 0
    total_ok: int = 0
    over_3s: int = 0  # requests that waited longer than Graph's acknowledgement deadline

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


class _Window:
    """Per-process tallies of the measurement window ``[start, end)``.

    Throughput counts answers inside the window. Latency takes every request answered inside it,
    plus every request sent before its end and answered after it (or never: see
    :meth:`_Sender.abandon`), so slow answers at the edges are not lost.
    """

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies = array("d")
        self.answered = 0
        self.statuses: Counter[int] = Counter()
        self.reconnects = 0
        self.total_ok = 0  # 2xx answers over the whole run, warm-up included

    def record(self, sent_at: float, done_at: float, status: int) -> None:
        self.total_ok += 200 <= status < 300
        if self.start <= done_at < self.end:
            self.answered += 1
            self.statuses[status] += 1
        if done_at >= self.start and sent_at < self.end:
            self.latencies.append(done_at - sent_at)


def _take_messages(buffer: bytearray) -> Iterator[bytes]:
    """Remove each complete HTTP message from the front of ``buffer`` and yield its head."""
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        total = head_end + 4 + _content_length(bytes(buffer[:head_end]))
        if len(buffer) < total:
            return
        head = bytes(buffer[:head_end])
        del buffer[:total]
        yield head


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _Schedule:
    """When one sender's next request is due: at once (closed loop, ``pace`` 0) or every ``pace`` seconds."""

    def __init__(self, first: float, pace: float) -> None:
        self.due, self.pace = first, pace

    def next_due(self, now: float) -> float:
        return self.due if self.pace else now

    def advance(self) -> None:
        self.due += self.pace


class _Sender(asyncio.Protocol):
    """One connection, one request at a time, until ``stop_at``.

    Closed loop: the next request goes out as soon as the answer is in. Open loop: one request
    every ``pace`` seconds; one that is late because the last answer was slow goes out at once, and
    its latency counts from when it was due, so a slow server cannot hide its queue.
    """

    def __init__(self, request_for: Callable[[int], bytes], seq: list[int], window: _Window, stop_at: float,
                 schedule: _Schedule) -> None:
        self.request_for, self.seq, self.window, self.stop_at = request_for, seq, window, stop_at
        self.schedule = schedule
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.sent_at: float | None = None  # when the request in flight was due
        self.answers = 0
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        # A request is waiting from the moment the sender tries to connect: a server that does not
        # accept the connection keeps it waiting just as surely as one that does not answer.
        self.connecting_since: float | None = schedule.next_due(time.time())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        waiting_since, self.connecting_since = self.connecting_since, None
        if waiting_since is not None and waiting_since <= time.time() and waiting_since < self.window.end:
            self._write(waiting_since)  # it waited for the connection: its latency counts from then
        else:
            self._next()

    def _next(self) -> None:
        now = time.time()
        due = self.schedule.next_due(now)
        if due > now:
            self.timer = asyncio.get_running_loop().call_later(due - now, self._send, due)
        else:
            self._send(due)

    def _send(self, due: float) -> None:
        self.timer = None
        if due >= self.stop_at:
            self.sent_at = None
            self.transport.close()
            return
        self._write(due)

    def _write(self, due: float) -> None:
        self.seq[0] += 1
        self.sent_at = due
        self.transport.write(self.request_for(self.seq[0]))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for head in _take_messages(self.buffer):
            status = int(head[9:12])
            now = time.time()
            if self.sent_at is not None:
                self.window.record(self.sent_at, now, status)
                self.answers += self.window.start <= now < self.window.end
                self.sent_at = None
            self.schedule.advance()
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def abandon(self, now: float) -> None:
        """The run is over: a request still unanswered counts with its wait so far; hang up.

        That includes one waiting since the warm-up for a connection or an answer that never came
        (a sender the server never served), so starved senders show in the high percentiles.
        """
        waiting_since = self.sent_at if self.sent_at is not None else self.connecting_since
        if waiting_since is not None and waiting_since < self.window.end:
            self.window.latencies.append(now - waiting_since)
        self.sent_at = self.connecting_since = None
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()


def _request_maker(spec: LoadSpec, process: int) -> Callable[[int], bytes]:
    if spec.bodies is None:
        request = f"GET {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\nUser-Agent: bench\r\n\r\n".encode()
        return lambda seq: request
    head = (f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: bench\r\n").encode()
    templates = NotificationBodies(spec.bodies.subscriptions, spec.bodies.tenant_id, spec.bodies.batch,
                                   f"{spec.bodies.prefix}-p{process}").templates()

    def request_for(seq: int) -> bytes:
        body = templates[seq % len(templates)].replace(SEQ, b"%d" % seq)
        return b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)

    return request_for


async def _sender_loop(spec: LoadSpec, request_for: Callable[[int], bytes], seq: list[int], window: _Window,
                       stop_at: float, schedule: _Schedule, live: list[_Sender]) -> None:
    """Keep one sender connected until ``stop_at`` (a new connection whenever the server closes one)."""
    loop = asyncio.get_running_loop()
    connections = 0
    while time.time() < stop_at:
        sender = _Sender(request_for, seq, window, stop_at, schedule)
        live.append(sender)
        try:
            await loop.create_connection(lambda sender=sender: sender, spec.host, spec.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        connections += 1
        if connections > 1:
            window.reconnects += 1
        await sender.closed


async def _drive_async(spec: LoadSpec, process: int, senders: int, start_at: float) -> dict:
    window = _Window(start_at + spec.warmup, start_at + spec.warmup + spec.duration)
    request_for = _request_maker(spec, process)
    live: list[_Sender] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    seq = [0]
    pace = spec.senders / spec.rate if spec.rate else 0.0
    schedules = [_Schedule(start_at + pace * (process + spec.processes * k) / spec.senders, pace)
                 for k in range(senders)]
    tasks = [asyncio.create_task(_sender_loop(spec, request_for, seq, window, window.end, schedule, live))
             for schedule in schedules]
    _, pending = await asyncio.wait(tasks, timeout=window.end - time.time() + GRACE)
    now = time.time()
    for sender in live:
        sender.abandon(now)
    for task in pending:
        task.cancel()
    starved = senders - len({id(sender.schedule) for sender in live if sender.answers})
    return {"latencies": window.latencies.tobytes(), "answered": window.answered,
            "statuses": dict(window.statuses), "starved": starved, "reconnects": window.reconnects,
            "total_ok": window.total_ok}


def _drive(spec: LoadSpec, process: int, senders: int, start_at: float) -> dict:
    return asyncio.run(_drive_async(spec, process, senders, start_at))


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec.senders`` senders split over ``spec.processes`` client processes."""
    shares = [spec.senders // spec.processes + (i < spec.senders % spec.processes) for i in range(spec.processes)]
    start_at = time.time() + START_DELAY
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(spec.processes, mp_context=context) as pool:
        parts = list(pool.map(_drive, [spec] * spec.processes, range(spec.processes), shares,
                              [start_at] * spec.processes))
    latencies = array("d")
    statuses: Counter[int] = Counter()
    for part in parts:
        latencies.frombytes(part["latencies"])
        statuses.update(part["statuses"])
    answered = sum(part["answered"] for part in parts)
    ordered = sorted(latencies)
    return LoadResult(
        requests=answered, rps=answered / spec.duration,
        p50_ms=percentile(ordered, 50) * 1000, p99_ms=percentile(ordered, 99) * 1000,
        statuses=dict(statuses), starved=sum(part["starved"] for part in parts),
        reconnects=sum(part["reconnects"] for part in parts), total_ok=sum(part["total_ok"] for part in parts),
        over_3s=sum(1 for latency in latencies if latency > ACK_DEADLINE),
    )


# -- a server that does nothing, to measure the client alone -----------------------------------

class _Canned(asyncio.Protocol):
    """Answers every complete request with an empty 202, as fast as asyncio allows."""

    ANSWER = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for _ in _take_messages(self.buffer):
            self.transport.write(self.ANSWER)


def serve_canned(port_pipe) -> None:
    """Process entry point: serve canned 202s on a free port (sent back through ``port_pipe``)."""
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", 0, backlog=1024)
        port_pipe.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def client_capacity(spec: LoadSpec) -> LoadResult:
    """The same load against a server that only answers 202: what the client alone can drive."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=serve_canned, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        return run_load(dataclasses.replace(spec, port=port, rate=None))
    finally:
        server.terminate()
        server.join(5)
