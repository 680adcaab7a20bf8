"""The store: every byte on disk (LMDB log, stream index, idempotency, snapshots, checkpoints).

One LMDB environment per data directory, held exclusively by one process. See
:class:`EventStore` for the operations and :class:`Codec` for how events are stored.
"""

from store._codec import Codec, Upcaster
from store._logging import EngineLogger, get_logger
from store._records import (
    CommandRecord,
    Committed,
    Durability,
    ParkedEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from store._store import EventStore
from store._viewstore import ViewStore

__all__ = [
    "Codec",
    "CommandRecord",
    "Committed",
    "Durability",
    "EngineLogger",
    "EventStore",
    "ParkedEvent",
    "RecordedEvent",
    "Snapshot",
    "StreamAppend",
    "Upcaster",
    "ViewStore",
    "get_logger",
]
