"""UTC timestamps in the one text form the database stores."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """``moment`` as ISO-8601 UTC text with microseconds, so stored values sort as text."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def odata(moment: datetime) -> str:
    """``moment`` as an OData date-time literal, for Graph ``$filter`` expressions."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(utcnow())


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 text (Graph's trailing ``Z`` included) into an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
