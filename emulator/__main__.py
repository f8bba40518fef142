"""``python -m emulator [--host H] [--port N] [--redirect-uri URI]``: run the emulator on its own, seeded."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from .server import Emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--redirect-uri", default="http://127.0.0.1:8000/auth/callback",
                        help="the demo app registration's redirect URI (the service's /auth/callback)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with Emulator(host=args.host, port=args.port) as emulator:
        demo = emulator.seed_demo(args.redirect_uri)
        print(f"Emulator:      {emulator.base_url}")
        print(f"CA file:       {emulator.ca_file}  (export REQUESTS_CA_BUNDLE={emulator.ca_file})")
        print(f"Control page:  {emulator.base_url}/_emulator/")
        print(f"Demo data:     {json.dumps(demo, indent=2)}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping.")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into an exception so the ``with`` block stops the server and deletes the keys."""
    raise SystemExit(0)


if __name__ == "__main__":
    main()
