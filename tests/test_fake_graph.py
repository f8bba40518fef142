"""The fake Graph client takes the real client's arguments, so the handlers' unit tests call what production calls."""

from __future__ import annotations

import inspect

import pytest

from app.microsoft.graph import GraphClient
from tests.fake_graph import FakeGraph

OPERATIONS = ("get_messages", "get_message", "find_messages", "delta_pages", "create_draft", "create_reply",
              "update_draft", "send_draft", "delete_draft", "create_subscription", "renew_subscription",
              "delete_subscription")


def parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_fake_takes_the_arguments_the_client_takes(operation):
    assert parameters(getattr(FakeGraph, operation)) == parameters(getattr(GraphClient, operation))
