"""schemathesis drives the running service from its own OpenAPI document: generated requests, valid and
not, to every ``/api`` operation, with the API token. No answer may be a 5xx other than the documented
503, and every answer must match the document (status, content type, body schema).

The service holds a record with an uploaded email, a connected mailbox and a send, so the generated
ids 1 and 2 name real rows now and then and the answers' schemas are checked on real data.
"""

from __future__ import annotations

import base64
import re
import tempfile
from pathlib import Path

import pytest
import requests
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from emulator import Emulator
from tests.conftest import API_TOKEN
from tests.e2e.harness import Browser, PlatformApi, ServiceServer
from tests.e2e.mail import MEGAN, VENDOR, upload

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 25


@schemathesis.serializer("message/rfc822")
def raw_email(ctx, value):
    """What the upload route takes is bytes; a generated string is sent as its UTF-8."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def running():
    emulator = Emulator().start()
    with tempfile.TemporaryDirectory() as workdir:
        service = ServiceServer(emulator, {
            "TESTING": True, "DATABASE_PATH": str(Path(workdir) / "service.db"),
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "test", "API_TOKEN": API_TOKEN,
        }).start()
        try:
            _populate(service)
            yield service
        finally:
            service.stop()
            emulator.stop()


def _populate(service: ServiceServer) -> None:
    api = PlatformApi(service)
    megan = service.demo["users"]["megan"]
    record = api.create_record()
    service.emulator.deliver_email(megan, subject="Onboarding documents", body="Attached are our W-9...",
                                   sender=VENDOR, to=[MEGAN], internet_message_id="<first.1@acme.example>")
    upload(api, record["id"])
    Browser(service).connect(record["id"], "megan")
    sent = api.post(f"/api/records/{record['id']}/messages", headers={"Idempotency-Key": "conformance-1"}, json={
        "connection_id": 1, "to": ["dana@acme.example"], "subject": "W-9", "body": "Attached.", "attachments": [
            {"name": "w9.pdf", "content_type": "application/pdf",
             "content_base64": base64.b64encode(b"%PDF").decode()}]})
    assert sent.status_code == 202, sent.text


def operations(service: ServiceServer) -> list:
    """Every operation of the service's own document, as schemathesis reads it over HTTP."""
    schema = schemathesis.openapi.from_url(service.url("/api/openapi.json"))
    return [result.ok() for result in schema.get_all_operations()]


def conformance_failures(service: ServiceServer, operation, mode: GenerationMode, *,
                         existing: bool = False) -> str | None:
    """Run one operation's generated cases; the first failure schemathesis reports, if any.

    ``existing``: every id in the path is 1, a row the fixture made, so answers carry real data.
    """
    ids = {name: 1 for name in re.findall(r"{(\w+)}", operation.path)} if existing else None
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call(base_url=service.base_url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        if response.status_code == 503 and "Retry-After" in response.headers:
            return  # documented: busy, retry later (never a crash)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:  # a check's AssertionError, or schemathesis's FailureGroup
        return f"{operation.label} ({mode.value}{', existing rows' if existing else ''}): {failure}"
    return None


def test_every_answer_matches_the_document_and_none_is_a_server_error(running):
    """schemathesis's pytest integration (``from_fixture``) reads ``Function._nodeid``, which pytest 9.2
    no longer has, so the operations' cases run under Hypothesis here, one operation after another."""
    found = operations(running)
    document = requests.get(running.url("/api/openapi.json"), timeout=10).json()
    labels = {f"{method.upper()} {path}" for path, methods in document["paths"].items() for method in methods}
    assert {operation.label for operation in found} == labels - {"GET /api/openapi.json"}  # it skips its source
    runs = [(GenerationMode.POSITIVE, False), (GenerationMode.NEGATIVE, False), (GenerationMode.POSITIVE, True)]
    found.sort(key=lambda operation: operation.method.upper() == "DELETE")  # the fixture's rows serve the rest first
    failures = [failure for operation in found for mode, existing in runs
                if (failure := conformance_failures(running, operation, mode, existing=existing))]
    assert not failures, "\n\n".join(failures)
