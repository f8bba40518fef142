"""python -m emulator: the Microsoft identity platform (Entra ID v2) and Graph mail on one local HTTPS port.

It seeds a demo (an app registration, two tenants, four users), prints the base URL, the CA file to trust,
the control page and the demo's ids and secret, and serves until Ctrl-C or SIGTERM. State is in memory only.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from .server import Emulator

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"
EPILOG = """\
point a client at it:
  msal authority   {base URL}/organizations, with instance_discovery=False
  Graph base URL   {base URL}/v1.0
  TLS              trust the printed CA file, e.g. export REQUESTS_CA_BUNDLE={CA file}
the control page ({base URL}/_emulator/) shows mailboxes, delivers mail and replies, approves admin consent
requests and injects faults; the same actions are a JSON API under /_emulator/ (see the README)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; the certificate names it (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 (the default) picks a free one")
    parser.add_argument("--redirect-uri", action="append", dest="redirect_uris", metavar="URI",
                        help="a redirect URI of the demo app registration, where sign-in sends the code; "
                             f"repeat for more (default: the service's {DEFAULT_REDIRECT_URI})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with Emulator(host=args.host, port=args.port) as emulator:
        demo = emulator.seed_demo(args.redirect_uris or [DEFAULT_REDIRECT_URI])
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
