"""Shared helpers of the example domain's tests: engines over it and polling with a deadline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

from actors import Engine
from examples.inventory.levels import STOCK_LEVELS
from examples.inventory.sales import SALES
from examples.inventory.schema import inventory_codec
from examples.inventory.stock import STOCK
from store import EventStore, RecordedEvent

TIMEOUT: Final = 10.0
Backend = Literal["memory", "lmdb"]
BACKENDS: Final[tuple[Backend, ...]] = ("memory", "lmdb")


@contextmanager
def inventory_engine(path: Path, backend: Backend = "memory", **options: Any) -> Iterator[Engine]:
    """Open an engine over the example's deciders, read model and codec (no saga)."""
    options.setdefault("durability", "async")
    options.setdefault("deciders", [STOCK, SALES])
    options.setdefault("views", [STOCK_LEVELS])
    options.setdefault("codec", inventory_codec())
    engine = Engine.open(path, view_backends={"stock_levels": backend}, **options)
    try:
        yield engine
    finally:
        engine.close()


def all_events(store: EventStore) -> list[RecordedEvent]:
    """Return the whole log."""
    return [event for batch in store.read_all() for event in batch]
