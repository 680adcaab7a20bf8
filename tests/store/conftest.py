from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from domain.orders import ORDERS
from store import Codec, EventStore


@pytest.fixture
def codec() -> Codec:
    return Codec(ORDERS.event_types)


@pytest.fixture
def store(tmp_path: pathlib.Path, codec: Codec) -> Iterator[EventStore]:
    opened = EventStore.open(tmp_path / "data", codec=codec, durability="async")
    try:
        yield opened
    finally:
        opened.close()
