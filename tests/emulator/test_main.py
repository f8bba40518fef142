"""``python -m emulator``: the emulator as a standalone tool, seeded and serving until SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_emulator_serves_the_seeded_demo_until_sigterm():
    command = [sys.executable, "-m", "emulator", "--redirect-uri", "https://app.example/cb",
               "--redirect-uri", "https://app.example/admin"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            base_url = re.match(r"Emulator: +(\S+)", process.stdout.readline()).group(1)
            ca_file = re.match(r"CA file: +(\S+)", process.stdout.readline()).group(1)
            assert process.stdout.readline().strip() == f"Control page:  {base_url}/_emulator/"

            state = requests.get(f"{base_url}/_emulator/state", verify=ca_file, timeout=5).json()
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=10)

    assert state["apps"][0]["redirect_uris"] == ["https://app.example/cb", "https://app.example/admin"]
    assert {t["name"] for t in state["tenants"]} == {"Contoso", "Fabrikam"}
    assert returncode == 0 and not Path(ca_file).exists()  # the keys are deleted on the way out
