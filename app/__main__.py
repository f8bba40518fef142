"""``python -m app``: the whole service in one process.

A multi-threaded waitress server (:mod:`app.server`), the worker threads and the scheduler; in
sandbox mode (no ``AZURE_CLIENT_ID``) also the embedded Microsoft emulator, seeded with demo data.
SIGINT or SIGTERM stops the server, lets the workers finish their jobs, and exits cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from app import create_app
from app.core.config import ConfigError, load_settings, read_dotenv
from app.core.logs import configure_logging
from app.runtime import Runtime
from app.server import build_server

log = logging.getLogger("app")


class _Stop(KeyboardInterrupt):
    """Raised in the main thread by the signal handler to leave the server loop.

    It must be a KeyboardInterrupt: waitress's event loop swallows any other exception raised
    while it handles a connection (it would close that channel and keep serving), but lets
    KeyboardInterrupt and SystemExit through.
    """


def _on_signal(signum: int, frame: Any) -> None:
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # a second signal must not interrupt the clean stop
        signal.signal(stop_signal, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def main() -> int:
    environ = {**read_dotenv(Path(".env")), **os.environ}
    try:
        settings = load_settings(environ)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings["LOG_LEVEL"], settings["LOG_FORMAT"])
    emulator, overrides = None, {}
    if settings["SANDBOX"]:
        from app.sandbox import start_sandbox

        emulator, overrides = start_sandbox(settings, environ)
    app = create_app(overrides)
    runtime = Runtime(app)
    server = build_server(app, settings["HOST"], settings["PORT"], settings["WEB_THREADS"],
                          max_connections=settings["WEB_MAX_CONNECTIONS"],
                          client_timeout=settings["WEB_CLIENT_TIMEOUT_SECONDS"])
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    runtime.start()
    try:
        log.info("Serving on http://%s:%s", settings["HOST"], server.effective_port)
        if emulator is not None:
            from app.sandbox import announce

            announce(app, emulator)
        server.run()  # waitress returns from here when _Stop interrupts its loop
    except _Stop:
        pass
    finally:
        log.info("Shutting down")
        server.task_dispatcher.shutdown()  # finish requests in flight (up to 5 s)
        server.close()
        runtime.stop()
        if emulator is not None:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
