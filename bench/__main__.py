"""``python -m bench`` (``make bench``): every benchmark in one run, one table, one JSON file.

The stages run one after the other so they do not compete for the two cores: the acknowledgement
path under waitress, its cost per request without a server, end to end with its polling baseline,
renewal, then acknowledgements during a connection flood and during hostile uploads, and last the
PostgreSQL layout (:mod:`bench.pg`). A stage that fails is reported and the others still run; the exit status is then 1.
A missed target is shown, not an error.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import ack, ack_cost, e2e, flood, hostile, live_page, pg, renewal, report

RESULTS = Path(__file__).resolve().parent / "results"
STAGES: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
    ("ack", ack.run),
    ("ack_cost", lambda results: ack_cost.run()),
    ("live_page", lambda results: live_page.run()),
    ("e2e", e2e.run),
    ("renewal", renewal.run),
    ("flood", flood.run),
    ("hostile", hostile.run),
    ("pg", pg.run),
]


def run_stage(name: str, stage: Callable[[Path], dict[str, Any]], figures: dict[str, Any]) -> bool:
    started = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        figures.update(stage(RESULTS))
        ok = True
    except Exception as e:
        traceback.print_exc()
        figures[f"{name}_error"] = f"{type(e).__name__}: {e}"
        ok = False
    figures[f"{name}_stage_s"] = time.monotonic() - started
    print(f"bench: {name} took {figures[f'{name}_stage_s']:.0f} s", file=sys.stderr, flush=True)
    return ok


def main() -> int:
    # msal nudges towards form_post on every sign-in; the service uses query mode on purpose.
    warnings.filterwarnings("ignore", "response_mode='form_post' is recommended", UserWarning)
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "cpus": os.cpu_count(), "python": platform.python_version()}
    started = time.monotonic()
    outcomes = [run_stage(name, stage, figures) for name, stage in STAGES]  # every stage runs, even after a failure
    ok = all(outcomes)
    figures["total_s"] = time.monotonic() - started
    report.write_json(figures, RESULTS / "latest.json")
    print(report.table(figures))
    print(f"\nTotal {figures['total_s']:.0f} s; figures in {RESULTS / 'latest.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
