"""Fixtures for the emulator's tests: a fresh emulator per test, signed-in Graph users, webhook receivers.

Starting and stopping an emulator takes about 30 ms, so every test gets its own and nothing has to
be reset between tests. The helper classes are in ``graph_support.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from emulator import Emulator

from .graph_support import GraphUser, Receiver, World


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port."""
    with Emulator() as emu:
        yield emu


@pytest.fixture
def world(emulator: Emulator) -> Iterator[World]:
    rv = World(emulator)
    yield rv
    rv.close()


@pytest.fixture
def alice(world: World) -> GraphUser:
    return world.user("alice")


@pytest.fixture
def bob(world: World) -> GraphUser:
    return world.user("bob")


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    """Start loopback webhook receivers (keyword arguments as for :class:`Receiver`); all stop after the test."""
    started: list[Receiver] = []

    def make(**options) -> Receiver:
        started.append(Receiver(**options))
        return started[-1]

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver()
