"""The one way to reach shared collaborators: a :class:`Services` built once per process.

The root (:func:`app.build_services`) builds it from the settings and passes it down: to the web
app (:mod:`app.web.context`), the workers and the scheduler (:class:`app.runtime.Runtime`). It lives
in the domain layer, the lowest that can name all of its parts (the store and queue of
:mod:`app.core`, the Graph and identity clients of :mod:`app.microsoft`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlite_utils import Database

from app.core import metrics
from app.core.crypto import Cipher
from app.core.db import store_location, thread_db
from app.core.mailbox_slots import MailboxSlots
from app.core.queue import JobQueue
from app.core.timeutil import utcnow
from app.microsoft.graph import GraphClient
from app.microsoft.http import Session
from app.microsoft.identity import Identity


def _nobody_listens() -> None:
    """``on_enqueue`` of a process that runs no workers (a web-only process, a CLI command)."""


@dataclass
class Services:
    """Shared by the web app, the workers and the scheduler of one process."""

    config: dict[str, Any]
    cipher: Cipher
    identity: Identity
    queue: JobQueue
    session: Session = field(default_factory=Session)
    clock: Callable[[], datetime] = utcnow  # tests move time forward by replacing it
    mailbox_slots: MailboxSlots | None = None
    """The store's count of Graph requests in flight per mailbox, over every process sharing it."""
    on_enqueue: Callable[[], None] = _nobody_listens
    """Called after a commit that queued work, to wake this process's idle workers at once (else they
    look every second). :class:`app.runtime.Runtime` sets it when it starts workers; nothing else does."""

    def db(self) -> Database:
        """This thread's database connection."""
        return thread_db(store_location(self.config))

    def graph_for(self, connection_id: int) -> GraphClient:
        """A Graph client acting as the user of ``connection_id``."""
        return GraphClient(f"{self.config['GRAPH_ENDPOINT']}/v1.0", partial(self.identity.access_token, connection_id),
                           self.session, mailbox=str(connection_id), observe=metrics.observe_graph,
                           shared_slots=self.mailbox_slots)
