"""``python -m app`` as an operator runs it: start-up, sandbox URLs, clean shutdown, no secrets in logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start(tmp_path: Path):
    """Start ``python -m app`` with ``env``; whatever a test asserts, the process is gone afterwards."""
    processes = []

    def run(env: dict[str, str]) -> subprocess.Popen:
        base = {k: v for k, v in os.environ.items() if not k.startswith(
            ("AZURE_", "API_TOKEN", "SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "DATABASE_PATH"))}
        process = subprocess.Popen([sys.executable, "-m", "app"], cwd=tmp_path,
                                   env={**base, "PYTHONPATH": str(ROOT), **env},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Read the output as it comes, so a full pipe can never stall the service's logging.
        process.lines = []
        process.reader = threading.Thread(target=lambda: process.lines.extend(process.stdout), daemon=True)
        process.reader.start()
        processes.append(process)
        return process

    yield run
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.reader.join(10)
        process.stdout.close()


def output_of(process: subprocess.Popen) -> str:
    process.reader.join(10)
    return "".join(process.lines)


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, output_of(process)
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("the service did not answer /healthz within 30 s")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    output = output_of(process)
    assert process.returncode == 0, output
    return output


def test_sandbox_starts_prints_the_demo_urls_and_stops_cleanly(start):
    port = free_port()
    process = start({"PORT": str(port)})
    wait_healthy(port, process)
    page = requests.get(f"http://127.0.0.1:{port}/records/1", timeout=5, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=/records/1", "pages need sign-in"
    login = requests.get(f"http://127.0.0.1:{port}{page.headers['Location']}", timeout=5, allow_redirects=False)
    assert login.status_code == 302 and "/oauth2/v2.0/authorize?" in login.headers["Location"]
    output = stop(process)
    assert f"http://127.0.0.1:{port}/records/1" in output and f"http://127.0.0.1:{port}/records/2" in output
    for account in ("megan@contoso.example", "alex@fabrikam.example", "admin@fabrikam.example"):
        assert account in output, "the banner names whom to sign in as, for Option 1 and Option 2"
    assert "/_emulator/" in output
    assert "Runtime: stopped" in output


def test_secrets_never_reach_the_logs(start, tmp_path):
    port = free_port()
    secrets = {
        "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "AZURE_CLIENT_SECRET": "client-secret-value-never-logged",
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SECRET_KEY": "session-secret-never-logged",
        "API_TOKEN": "api-token-never-logged",
    }
    process = start({**secrets, "PORT": str(port), "LOG_LEVEL": "DEBUG", "DATABASE_PATH": str(tmp_path / "s.db")})
    wait_healthy(port, process)
    output = stop(process)
    assert "Serving on" in output
    for value in secrets.values():
        if value != secrets["AZURE_CLIENT_ID"]:
            assert value not in output


def test_a_missing_required_variable_stops_with_one_sentence(start):
    process = start({"AZURE_CLIENT_ID": "x", "AZURE_CLIENT_SECRET": "y", "SECRET_KEY": "s", "API_TOKEN": "t"})
    process.wait(timeout=30)
    output = output_of(process)
    assert process.returncode == 2
    assert output.strip() == "configuration error: TOKEN_ENCRYPTION_KEYS is required outside sandbox mode " \
                             "(AZURE_CLIENT_ID is set)"
