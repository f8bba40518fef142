import io
import json
import logging

from app.core.logs import REQUEST_ID, JsonFormatter, TextFormatter, log_context


def record(message="Renewal: failed (%s)", *args, **extra):
    entry = logging.LogRecord("subscriptions.renewal", logging.WARNING, __file__, 1, message, args or ("Throttled",), None)
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_context_fields():
    token = log_context.set({"request_id": "req-1"})
    try:
        line = JsonFormatter().format(record(connection_id=7, subscription_id="sub-9"))
    finally:
        log_context.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "Renewal: failed (Throttled)"
    assert (entry["request_id"], entry["connection_id"], entry["subscription_id"]) == ("req-1", 7, "sub-9")
    assert entry["level"] == "WARNING" and entry["logger"] == "subscriptions.renewal"


def test_text_lines_are_readable_with_context_at_the_end():
    line = TextFormatter().format(record(connection_id=7))
    assert "WARNING" in line and line.endswith("Renewal: failed (Throttled) connection_id=7")


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
