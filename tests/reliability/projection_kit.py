"""A read model for the projection-process tests, importable by the projection process.

Read models a projection process keeps are pickled to it by reference: they must live in a module
it can import (this one: the tests' directories are on the path the engine hands its child).
"""

from __future__ import annotations

import msgspec

from store import RecordedEvent
from views import Storage

POISON = "poison"
"""Events of an order whose id ends with this word make :class:`PoisonCounter` raise."""


class CountEvents(msgspec.Struct, frozen=True):
    """Query: how many events :class:`PoisonCounter` has counted."""


class Counted(msgspec.Struct, frozen=True):
    """The counter's one row."""

    n: int


class PoisonCounter:
    """Counts events, in LMDB; raises for every event of an order whose id ends with POISON."""

    name = "poison_counter"
    tags = None
    query_types = (CountEvents,)
    default_backend = "lmdb"

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Count the event, or raise for a poison one."""
        if record.stream_id.endswith(POISON):
            raise ValueError(f"order {record.stream_id} is poison")
        table = storage.table("count", Counted)
        row = table.get("n")
        table.put("n", Counted(1 if row is None else row.n + 1))

    def query(self, storage: Storage, query: object) -> int:
        """Return the count."""
        del query
        row = storage.table("count", Counted).get("n")
        return 0 if row is None else row.n
