"""The folder crossings of two walks through the service (``python -m bench.walks``).

A walk is one piece of work followed from where it enters the service to where it ends, in this
process: the emulator, the service's WSGI app under a threaded server, and its workers (without the
scheduler). Two walks run, one after the other, once the mailbox is connected and the connect,
backfill and reconcile jobs are done:

- **notification**: the emulator's POST of one change notification to ``/webhooks/graph``, the
  receiver's write to the queue, a worker's claim, the message handler, its Graph fetch and the
  reply linked on the record;
- **send**: ``POST /api/records/{id}/messages``, the send job, its Graph calls, the outbox row
  ``sent`` and the entry on the record. The emulator drops change notifications meanwhile: those of
  the draft and of the Sent Items copy would start notification walks of their own.

A walk ends when its result is in the database, nothing is queued and no thread runs project code.

While it runs, a profile hook (``sys.setprofile``, and ``threading.setprofile`` for the threads it
starts) notes each call into a function of the project from a function of another folder. The
folders are the layers (:data:`RANKS`); code outside them (flask, werkzeug, sqlite_utils, requests,
the emulator, the standard library, this benchmark) is skipped over, so a call made through it,
such as a ``with`` block's ``__enter__`` or a Flask hook, counts from the nearest project function
below it on the stack. A crossing is a distinct (caller, callee) pair; it goes down when the
callee's layer ranks below the caller's, and anything else (up, or sideways between the two entry
adapters ``app/web`` and ``handlers``) makes the exit status 1.

The folder of a function is a function of its file's path (:func:`folder_of`) and the script
imports from the service only ``app.create_app`` and ``app.runtime.Runtime``, so it runs unchanged
on a checkout from before the layers, where the folders were ``app``, ``handlers`` and
``subscriptions``: copy it into that checkout's ``bench/`` (``git show walks:bench/walks.py >
bench/walks.py``) and run ``python -m bench.walks`` there.

Before Python 3.12 a running thread cannot be given a profile hook from outside, so the hook is
installed before the threads of the walks exist: the workers are started afresh under it (and allowed to settle before
recording starts), and the server closes every connection after one request, so each request runs
on a new thread.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

import app
from app import create_app
from app.runtime import Runtime
from bench.measure import free_port
from bench.stack import (
    VENDOR,
    Mailbox,
    ServiceProcess,
    add_users,
    connect,
    connection_ids,
    prepare_record,
    service_config,
    start_emulator,
    wait_until_settled,
)
from emulator import Emulator

ROOT = Path(app.__file__).resolve().parent.parent  # the checkout being measured
# Layer ranks, top to bottom (../shared/design/ARCHITECTURE.md section 2); app/web and handlers share one.
RANKS = {"app": 6, "app/web": 5, "handlers": 5, "subscriptions": 4, "app/records": 3, "app/microsoft": 2,
         "app/core": 1}
TARGET = 10  # modules a walk enters from another folder (issue 15)
WALK_TIMEOUT = 30.0
COMPREHENSIONS = (".<listcomp>", ".<dictcomp>", ".<setcomp>")  # counted as the function they are in


def folder_of(path: str) -> str | None:
    """The layer folder a source file is in: its deepest parent folder under :data:`ROOT` that is a layer.

    In the layout before the layers every module of ``app/`` is in ``app``. None outside the layers.
    """
    try:
        relative = Path(os.path.realpath(path)).relative_to(ROOT)
    except ValueError:
        return None
    return next((parent.as_posix() for parent in relative.parents if parent.as_posix() in RANKS), None)


def function_name(code: CodeType) -> str:
    """``module:qualified.name`` of a function of the project."""
    module = Path(os.path.realpath(code.co_filename)).relative_to(ROOT).with_suffix("")
    parts = module.parts[:-1] if module.name == "__init__" else module.parts
    qualname = code.co_qualname
    for suffix in COMPREHENSIONS:
        qualname = qualname.replace(suffix, "")
    return f"{'.'.join(parts)}:{qualname}"


@dataclass(frozen=True, order=True)
class Crossing:
    """One caller calling one callee of another folder; ``via`` names the library module that made the
    call when the caller never called the callee directly (Flask running a hook, ``contextlib``)."""

    caller_folder: str
    caller: str
    callee_folder: str
    callee: str
    via: str | None = field(default=None, compare=False)

    @property
    def downward(self) -> bool:
        return RANKS[self.callee_folder] < RANKS[self.caller_folder]


class CallTracer:
    """A profile hook that collects the cross-folder calls of project functions while :meth:`recording`."""

    def __init__(self) -> None:
        self._folders: dict[str, str | None] = {}
        self._calls: dict[tuple[CodeType, CodeType], str | None] = {}  # -> via
        self._recording = False

    def folder(self, code: CodeType) -> str | None:
        filename = code.co_filename
        if filename not in self._folders:
            self._folders[filename] = folder_of(filename)
        return self._folders[filename]

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self._recording:
            return
        callee = self.folder(frame.f_code)
        if callee is None:
            return
        caller, via = frame.f_back, None
        while caller is not None and self.folder(caller.f_code) is None:
            via = via or caller.f_globals.get("__name__", "?")
            caller = caller.f_back
        if caller is not None and self.folder(caller.f_code) != callee:
            pair = (caller.f_code, frame.f_code)
            if via is None or pair not in self._calls:  # a direct call wins
                self._calls[pair] = via

    @contextlib.contextmanager
    def installed(self) -> Iterator[CallTracer]:
        """The hook on this thread and on every thread started meanwhile (those keep it until they end)."""
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)
        try:
            yield self
        finally:
            sys.setprofile(None)
            threading.setprofile(None)

    @contextlib.contextmanager
    def recording(self) -> Iterator[set[Crossing]]:
        """Record the calls of the ``with`` block; the set is filled in when it ends."""
        crossings: set[Crossing] = set()
        self._calls = {}
        self._recording = True
        try:
            yield crossings
        finally:
            self._recording = False
            crossings.update(Crossing(self.folder(caller), function_name(caller), self.folder(callee),
                                      function_name(callee), via) for (caller, callee), via in self._calls.items())

    def busy_threads(self) -> list[str]:
        """The other threads that are in project code and not just waiting on a condition or event."""
        busy = []
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident() or (frame.f_code.co_filename == threading.__file__
                                                   and frame.f_code.co_name == "wait"):
                continue
            while frame is not None and self.folder(frame.f_code) is None:
                frame = frame.f_back
            if frame is not None:
                busy.append(next((t.name for t in threading.enumerate() if t.ident == ident), str(ident)))
        return busy


class OneRequestPerConnection(WSGIRequestHandler):
    """HTTP/1.0: the connection closes after the answer, so no request reuses a thread started earlier."""

    protocol_version = "HTTP/1.0"

    def log_request(self, *args: Any) -> None:
        """Quiet: the walks print their own report."""


@dataclass
class Stack:
    emulator: Emulator
    service: Flask
    client: ServiceProcess  # never started: its ``call`` and ``db`` reach the service served here
    mailbox: Mailbox


@dataclass
class Walk:
    name: str
    route: str
    crossings: list[Crossing]
    seconds: float


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    """The emulator and the service with one mailbox connected from a record, its set-up work done.

    The workers that did the set-up are stopped again; the walks bring their own.
    """
    with contextlib.ExitStack() as cleanup:
        emulator = start_emulator()
        cleanup.callback(emulator.stop)
        emulator.configure_delivery(created_then_updated=False)  # one notification per new message
        port = free_port()
        client_id, client_secret = emulator.register_app(redirect_uris=[f"http://127.0.0.1:{port}/auth/callback"])
        [mailbox] = add_users(emulator, emulator.add_tenant("Walks Corp"), 1, "walks.example")
        config = service_config(emulator, workdir, client_id, client_secret, port)
        with contextlib.chdir(workdir):  # no developer .env leaks in
            service = create_app(config)
        server = make_server("127.0.0.1", port, service, threaded=True, request_handler=OneRequestPerConnection)
        cleanup.callback(server.server_close)
        threading.Thread(target=server.serve_forever, name="walks-server", daemon=True).start()
        cleanup.callback(server.shutdown)
        client = ServiceProcess(config, workdir, workdir / "service.log")
        runtime = Runtime(service, workers=2, scheduler=False)
        runtime.start()
        try:
            prepare_record(client, emulator, mailbox)
            connect(client, emulator, mailbox)
            wait_until_settled(client, 1)
        finally:
            runtime.stop()
        mailbox.connection_id = connection_ids(client)[mailbox.user_id]
        yield Stack(emulator, service, client, mailbox)


def idle(stack: Stack) -> bool:
    """Nothing queued, running or waiting in the receiver's inbox."""
    with stack.client.db() as db:
        jobs = db.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
        inbox = db.execute("SELECT count(*) FROM inbox").fetchone()[0]
    return jobs + inbox == 0


def on_record(stack: Stack, internet_message_id: str | None) -> bool:
    with stack.client.db() as db:
        return db.execute("SELECT 1 FROM messages WHERE record_id = ? AND internet_message_id = ?",
                          [stack.mailbox.record_id, internet_message_id]).fetchone() is not None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WALK_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.01)


def deliver_reply(stack: Stack) -> Callable[[], bool]:
    """A reply to the record's email arrives in the mailbox; the walk is done once it is on the record."""
    mailbox, reply_id = stack.mailbox, "<walk.reply@vendor.example>"
    stack.emulator.deliver_email(mailbox.user_id, subject=f"RE: Onboarding documents {mailbox.index}",
                                 body="One more form attached.", sender=VENDOR, to=[mailbox.email],
                                 in_reply_to=mailbox.first_message_id, references=[mailbox.first_message_id],
                                 internet_message_id=reply_id)
    return lambda: on_record(stack, reply_id)


def send_reply(stack: Stack) -> Callable[[], bool]:
    """The records platform sends a reply from the record; done once the outbox row is sent and on the record."""
    rv = stack.client.call("POST", f"/api/records/{stack.mailbox.record_id}/messages",
                           headers={"Idempotency-Key": "walks-send"},
                           json={"connection_id": stack.mailbox.connection_id, "to": [], "reply": True,
                                 "body": "Thanks Dana, received."})
    rv.raise_for_status()
    outbox_id = rv.json()["id"]

    def sent() -> bool:
        with stack.client.db() as db:
            row = next(db.query("SELECT status, internet_message_id FROM outbox WHERE id = ?", [outbox_id]))
        return row["status"] == "sent" and on_record(stack, row["internet_message_id"])

    return sent


def walk(tracer: CallTracer, stack: Stack, name: str, route: str, start: Callable[[Stack], Callable[[], bool]]) -> Walk:
    """Record ``start`` and all it sets off, until its check holds, nothing is queued and no thread is busy."""
    with tracer.recording() as crossings:
        started = time.monotonic()
        finished = start(stack)
        wait_until(lambda: finished() and idle(stack) and not tracer.busy_threads(), f"the {name} walk")
        seconds = time.monotonic() - started
    return Walk(name, route, sorted(crossings, key=lambda c: (-RANKS[c.caller_folder], c)), seconds)


def run_walks(stack: Stack) -> list[Walk]:
    """Both walks, with one worker started under the profile hook and settled first."""
    tracer = CallTracer()
    with tracer.installed():
        runtime = Runtime(stack.service, workers=1, scheduler=False)
        runtime.start()
        try:
            wait_until(lambda: not tracer.busy_threads(), "the worker settling")
            walks = [walk(tracer, stack, "notification", "POST /webhooks/graph -> the reply linked on the record",
                          deliver_reply)]
            # From here on the draft and its Sent Items copy would start notification walks of their own.
            stack.emulator.configure_delivery(drop_rate=1.0)
            walks.append(walk(tracer, stack, "send", "POST /api/records/{id}/messages -> outbox sent, entry on the "
                              "record", send_reply))
        finally:
            runtime.stop()
    return walks


def revision() -> str:
    rv = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return rv.stdout.strip()[:72] if rv.returncode == 0 else "not a git checkout"


def module_of(function: str) -> str:
    return function.partition(":")[0]


def report(walks: list[Walk]) -> str:
    """Each walk at several grains: the modules it enters from another folder (what a reader opens to
    follow it), the function-to-function crossings between top-level folders (``app``, ``handlers``,
    ``subscriptions``: the folders of the layout before the layers), and between layers, the
    module-to-module pairs and every function-to-function crossing."""
    lines = [f"python -m bench.walks, in {ROOT} ({revision()})"]
    for w in walks:
        down = sum(c.downward for c in w.crossings)
        entered = sorted({module_of(c.callee) for c in w.crossings})
        top = [c for c in w.crossings if c.caller_folder.split("/")[0] != c.callee_folder.split("/")[0]]
        pairs = sorted({(module_of(c.caller), module_of(c.callee)) for c in w.crossings})
        lines += ["", f"{w.name}: {w.route} ({w.seconds:.2f} s)",
                  f"  {len(entered)} modules entered from another folder (target <= {TARGET}): {', '.join(entered)}",
                  f"  {len(top)} function-to-function crossings between top-level folders (app, handlers, "
                  f"subscriptions): {sum(c.downward for c in top)} downward",
                  f"  {len(pairs)} module-to-module crossings between layers, {len(w.crossings)} function-to-function: "
                  f"{down} downward, {len(w.crossings) - down} upward or sideways"]
        lines += [f"  {'down' if c.downward else 'NOT DOWN'}  {c.caller} -> {c.callee}  "
                  f"({c.caller_folder} -> {c.callee_folder}{f', via {c.via}' if c.via else ''})" for c in w.crossings]
    return "\n".join(lines)


def main() -> int:
    # msal nudges towards form_post on every sign-in; the service uses query mode on purpose.
    warnings.filterwarnings("ignore", "response_mode='form_post' is recommended", UserWarning)
    with tempfile.TemporaryDirectory(prefix="bench-walks-") as tmp, running_stack(Path(tmp)) as stack:
        walks = run_walks(stack)
    print(report(walks))
    return 0 if all(c.downward for w in walks for c in w.crossings) else 1


if __name__ == "__main__":
    sys.exit(main())
