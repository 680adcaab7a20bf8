"""The store: every byte on disk (LMDB log, stream index, idempotency, snapshots, checkpoints).

One LMDB environment per data directory, held exclusively by one process. See
:class:`EventStore` for the operations and :class:`Codec` for how events are stored.
"""

from store._bounds import last_key_under
from store._codec import Codec, Upcaster
from store._copy import BackupReport, CompactReport, backup, compact
from store._follower import LogFollower, ProjectionLog, ReadOnlyEnv
from store._logging import EngineLogger, get_logger
from store._records import (
    CommandRecord,
    Committed,
    Durability,
    ParkedEvent,
    ReadBatch,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)
from store._retention import (
    DEFAULT_IDEMPOTENCY_WINDOW,
    IdempotencyStats,
    IdempotencyWindow,
    PruneResult,
    RecentCommands,
)
from store._store import EventStore
from store._uuids import uuid_bytes, uuid_text
from store._viewstore import ViewStore

__all__ = [
    "DEFAULT_IDEMPOTENCY_WINDOW",
    "BackupReport",
    "Codec",
    "CommandRecord",
    "Committed",
    "CompactReport",
    "Durability",
    "EngineLogger",
    "EventStore",
    "IdempotencyStats",
    "IdempotencyWindow",
    "LogFollower",
    "ParkedEvent",
    "ProjectionLog",
    "PruneResult",
    "ReadBatch",
    "ReadOnlyEnv",
    "RecentCommands",
    "RecordedEvent",
    "Snapshot",
    "StreamAppend",
    "Upcaster",
    "ViewStore",
    "backup",
    "compact",
    "get_logger",
    "last_key_under",
    "uuid_bytes",
    "uuid_text",
]
