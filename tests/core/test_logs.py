import json
import logging

from app.core.logs import JsonFormatter, TextFormatter, log_context


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
