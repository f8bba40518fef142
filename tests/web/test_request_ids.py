"""Request ids: on every answer, and on every log line written while the request runs."""

import io
import json
import logging

from app.core.logs import JsonFormatter
from app.web.request_ids import REQUEST_ID


def test_every_response_carries_a_request_id(client):
    generated = {client.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(generated) == 3 and all(REQUEST_ID.fullmatch(id) for id in generated)
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    odd = client.get("/healthz", headers={"X-Request-Id": "<script>alert(1)</script>"}).headers["X-Request-Id"]
    assert odd != "<script>alert(1)</script>" and REQUEST_ID.fullmatch(odd)


def test_log_lines_written_during_a_request_name_it(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        client.post("/webhooks/graph", data="{broken", content_type="application/json",
                    headers={"X-Request-Id": "r-77"})
    finally:
        logging.getLogger().removeHandler(handler)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(e["request_id"] == "r-77" and "rejected" in e["message"] for e in entries)
