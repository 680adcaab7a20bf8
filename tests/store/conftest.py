from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator

import pytest

from domain.orders import ORDERS
from store import Codec, EventStore

# test_upgrade opens an engine with the tests' second aggregate type, from tests/actors (pytest
# puts each test file's own directory on sys.path; running tests/store alone would miss it).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "actors"))


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
