"""The ``emulator`` fixture: a running :class:`~emulator.Emulator` on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    emu.start()
    yield emu
    emu.stop()
