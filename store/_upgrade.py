"""Upgrade of a data directory to the current layout: streams keyed by ``(type, id)``, packed index.

Layouts: 1 (no ``layout`` key in ``meta``), streams keyed by id alone; 2, keyed by
``(stream_type, stream_id)`` (below); 3, the stream index packed into one LMDB key per stream
(:mod:`store._index_upgrade`, run after the step to 2); 4, uuid command ids keyed by their 16
bytes (:mod:`store._command_keys`), and log values that may be zstd frames with dictionaries in
the ``dicts`` table (:mod:`store._frames`: nothing to rewrite for those, the table is created at
open and records are compressed from then on; an older engine refuses the directory by its
layout number). The rest of this docstring is the step from 1 to 2.

Until issue 10 (item 6) the per-stream tables were keyed by the stream id alone:
``heads`` (``stream_id`` -> version), ``streams`` (``stream_id + NUL + 8-byte version`` ->
position) and ``snapshots`` (``stream_id`` -> snapshot), so two aggregate types with the same
id shared one stream and replayed each other's events. Now each of these keys starts with the
stream key ``stream_type + NUL + stream_id`` (:func:`store._log.stream_key`). The ``log`` and
the ``commands`` table are unchanged.

:func:`upgrade_layout` runs at every open of the event store. The ``meta`` table holds the
layout version (key ``layout``, 8 bytes big-endian); at :data:`LAYOUT` nothing else is read.
Otherwise:

1. Every ``heads`` key without NUL is an old one (ids never hold NUL; a new key holds exactly
   one). The stream's type is read from the envelope of its first event
   (:meth:`~store.Codec.stream_of`: the event itself is not decoded). Its index entries, then
   its head, then its snapshot move to the new key; the old keys are deleted.
2. Snapshot keys without NUL left after that belong to no stream (saved without events); they
   are deleted: a snapshot is only a cache of the log.
3. The layout version (2) is set; once the index is packed too, one INFO line
   ``streams_rekeyed`` (streams, events, seconds) is logged.

**Bounded and resumable.** The work runs in write transactions of at most ``batch_entries``
index entries each (a longer stream is split over several). Each transaction also records, in
the same commit, where it stopped (meta key ``upgrade``: the last old head done and the stream
in progress with its type and next version), so a crash at any point leaves a consistent state
that the next open finishes. Nothing is ever rewritten twice.

**Streams of the old bug.** A stream whose events carry more than one type (two aggregate types
used one id) is kept whole under the type of its first event: the log is never rewritten and a
stream's versions must stay gap-free. A WARNING ``mixed_stream_kept_whole`` names it and its
types. Its snapshot is dropped (it holds the state of whichever type saved last), so that
aggregate replays from the log. The other type's aggregate of that id starts empty under its own
key; its events stay in the log (and the views) but no longer count for it.

**Streams that cannot be rekeyed.** Ids of up to 500 bytes were accepted before; the type now
shares the key's 502 bytes. A stream whose type and id cannot form a valid key (or whose first
event cannot be read) stays under its old keys, where nothing addresses it any more, with a
WARNING ``stream_not_rekeyed``; its events stay in the log.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import msgspec

from domain.errors import CorruptLog, EngineError, InvalidCommand
from store._command_keys import COMMANDS_PROGRESS_KEY, pack_command_keys_step
from store._index_upgrade import PACK_PROGRESS_KEY, PACKED, pack_index_step
from store._log import stream_key
from store._logging import get_logger

if TYPE_CHECKING:
    from store._codec import Codec
    from store._env import Database, Txn
    from store._txns import Transactions

__all__ = ["BATCH_ENTRIES", "LAYOUT", "UpgradeReport", "upgrade_layout"]

log = get_logger(__name__)

LAYOUT: Final = 4
"""The layout this code writes: streams keyed by ``(stream_type, stream_id)`` (layout 2), their
index packed (layout 3, :mod:`store._index_upgrade`), uuid command ids packed and log values
compressed (layout 4)."""
REKEYED: Final = 2
"""The layout whose streams are keyed by ``(stream_type, stream_id)``."""
BATCH_ENTRIES: Final = 10_000
"""Most stream index entries rewritten in one write transaction."""

_LAYOUT_KEY: Final = b"layout"
_PROGRESS_KEY: Final = b"upgrade"
_NUL: Final = b"\x00"


class _Progress(msgspec.Struct, array_like=True):
    # Where the upgrade stands; stored under the meta key "upgrade" by every transaction.
    after: bytes = b""  # the last old heads key done (skipped ones included)
    stream_id: str = ""  # the stream in progress ("": none)
    stream_type: str = ""
    next_version: int = 0
    head: int = 0
    types: list[str] = msgspec.field(default_factory=list)  # distinct, the first one first


_PROGRESS_DECODER: Final = msgspec.msgpack.Decoder(_Progress)
_ENCODER: Final = msgspec.msgpack.Encoder()


class UpgradeReport(msgspec.Struct, kw_only=True):
    """What one run of :func:`upgrade_layout` did.

    Attributes:
        streams: Streams rekeyed by this run.
        events: Stream index entries rewritten by this run.
        mixed: Streams kept whole under their first event's type, with their types.
        not_rekeyed: Streams left under their old keys, with the reason.
        orphan_snapshots: Old snapshots of no stream that were deleted.
        packed: Stream index rows moved to the packed index (layout 2 -> 3).
        command_keys: Idempotency rows re-keyed by their uuid bytes (layout 3 -> 4).
        resumed: True when an interrupted upgrade was found and continued.
        done: True when the directory is now at :data:`LAYOUT`.
        seconds: Wall time of this run.
    """

    streams: int = 0
    events: int = 0
    mixed: list[tuple[str, list[str]]] = msgspec.field(default_factory=list)
    not_rekeyed: list[tuple[str, str]] = msgspec.field(default_factory=list)
    orphan_snapshots: int = 0
    packed: int = 0
    command_keys: int = 0
    resumed: bool = False
    done: bool = False
    seconds: float = 0.0


def upgrade_layout(
    txns: Transactions,
    dbs: dict[str, Database],
    codec: Codec,
    *,
    batch_entries: int = BATCH_ENTRIES,
    max_batches: int | None = None,
) -> UpgradeReport | None:
    """Bring the store's tables to :data:`LAYOUT`; see the module docstring.

    Args:
        txns: The store's transactions (map growth and the write lock come with them).
        dbs: The store's tables, ``meta`` included.
        codec: Reads the stream type from the envelopes.
        batch_entries: Most index entries per write transaction (>= 1).
        max_batches: Stop after this many transactions (a test hook: an interrupted upgrade).

    Returns:
        None if the store was at the current layout already (one read), else the report.

    Raises:
        EngineError: The directory holds a newer layout than this code knows.
    """
    meta = dbs["meta"]
    stored = txns.read(lambda txn: txn.get(_LAYOUT_KEY, db=meta))
    layout = 0 if stored is None else int.from_bytes(stored, "big")
    if layout == LAYOUT:
        return None
    if layout > LAYOUT:
        raise EngineError(
            f"the data directory {txns.path} has layout {layout}, newer than this code's "
            f"{LAYOUT}: open it with the newer version of the engine"
        )
    started = time.perf_counter()
    report = UpgradeReport()
    report.resumed = (
        txns.read(
            lambda txn: (
                txn.get(_PROGRESS_KEY, db=meta)
                or txn.get(PACK_PROGRESS_KEY, db=meta)
                or txn.get(COMMANDS_PROGRESS_KEY, db=meta)
            )
        )
        is not None
    )
    budget = max(batch_entries, 1)
    batches = 0
    rekeyed = layout >= REKEYED
    while not rekeyed and (max_batches is None or batches < max_batches):
        # A fresh report per attempt: write() re-runs the function after growing the map.
        step = txns.write(lambda txn: _step(txn, dbs, codec, budget))
        batches += 1
        for stream_id, types in step.mixed:
            log.warning("mixed_stream_kept_whole", stream_id=stream_id, types=types, kept=types[0])
        for stream_id, reason in step.not_rekeyed:
            log.warning("stream_not_rekeyed", stream_id=stream_id, reason=reason)
        _add(report, step)
        rekeyed = step.done
    packed = layout >= PACKED
    while rekeyed and not packed and (max_batches is None or batches < max_batches):
        moved, packed = txns.write(lambda txn: pack_index_step(txn, dbs, budget))
        report.packed += moved
        batches += 1
    while packed and not report.done and (max_batches is None or batches < max_batches):
        moved, report.done = txns.write(lambda txn: _command_keys_step(txn, dbs, budget))
        report.command_keys += moved
        batches += 1
    report.seconds = time.perf_counter() - started
    if report.done:
        _log_done(txns, report)
    return report


def _log_done(txns: Transactions, report: UpgradeReport) -> None:
    worked = report.streams or report.orphan_snapshots or report.not_rekeyed
    if worked or report.resumed:
        log.info(
            "streams_rekeyed",
            path=str(txns.path),
            streams=report.streams,
            events=report.events,
            mixed=len(report.mixed),
            not_rekeyed=len(report.not_rekeyed),
            orphan_snapshots=report.orphan_snapshots,
            resumed=report.resumed,
            seconds=round(report.seconds, 6),
        )
    for event, field, count in (
        ("command_keys_packed", "rows", report.command_keys),
        ("stream_index_packed", "entries", report.packed),
    ):
        if count:
            log.info(
                event,
                path=str(txns.path),
                resumed=report.resumed,
                seconds=round(report.seconds, 6),
                **{field: count},
            )


def _command_keys_step(txn: Txn, dbs: dict[str, Database], budget: int) -> tuple[int, bool]:
    moved, done = pack_command_keys_step(txn, dbs, budget)
    if done:
        txn.put(_LAYOUT_KEY, LAYOUT.to_bytes(8, "big"), db=dbs["meta"])
    return moved, done


def _add(total: UpgradeReport, step: UpgradeReport) -> None:
    total.streams += step.streams
    total.events += step.events
    total.mixed.extend(step.mixed)
    total.not_rekeyed.extend(step.not_rekeyed)
    total.orphan_snapshots += step.orphan_snapshots


def _step(txn: Txn, dbs: dict[str, Database], codec: Codec, budget: int) -> UpgradeReport:
    """Do at most ``budget`` index entries of work in ``txn`` and record where it stopped."""
    work = _Rekeying(txn, dbs, codec)
    meta = dbs["meta"]
    raw = txn.get(_PROGRESS_KEY, db=meta)
    progress = _Progress() if raw is None else _PROGRESS_DECODER.decode(raw)
    while budget > 0:
        if progress.stream_id:
            budget -= work.move(progress, budget)
            if progress.next_version > progress.head:
                work.finish(progress)
                progress = _Progress(after=progress.stream_id.encode())
            continue
        old = _next_old_head(txn, dbs["heads"], progress.after)
        if old is None:
            work.step.orphan_snapshots = _drop_orphan_snapshots(txn, dbs["snapshots"])
            txn.put(_LAYOUT_KEY, REKEYED.to_bytes(8, "big"), db=meta)
            txn.delete(_PROGRESS_KEY, db=meta)
            work.step.done = True
            return work.step
        progress = work.begin(old, progress)
        budget -= 1
    txn.put(_PROGRESS_KEY, _ENCODER.encode(progress), db=meta)
    return work.step


def _next_old_head(txn: Txn, heads: Database, after: bytes) -> bytes | None:
    """Return the first heads key above ``after`` that has no NUL (an old one), or None."""
    cursor = txn.cursor(db=heads)
    found = cursor.set_range(after) if after else cursor.first()
    while found:
        key = cursor.key()
        if key != after and _NUL not in key:
            return key
        found = cursor.next()
    return None


def _drop_orphan_snapshots(txn: Txn, snapshots: Database) -> int:
    """Delete the old-layout snapshots left (those of no stream); return how many."""
    keys = txn.cursor(db=snapshots).iternext(keys=True, values=False)
    orphans = [key for key in keys if _NUL not in key]
    for key in orphans:
        txn.delete(key, db=snapshots)
    return len(orphans)


class _Rekeying:
    """Rekeys streams inside one write transaction, counting what it did in ``step``."""

    def __init__(self, txn: Txn, dbs: dict[str, Database], codec: Codec) -> None:
        self.txn = txn
        self.heads = dbs["heads"]
        self.streams = dbs["streams"]
        self.snapshots = dbs["snapshots"]
        self.log = dbs["log"]
        self.codec = codec
        self.step = UpgradeReport()

    def begin(self, old: bytes, progress: _Progress) -> _Progress:
        """Start on the stream of the old heads key ``old``; skip it if it cannot be rekeyed."""
        txn = self.txn
        stream_id = old.decode(errors="replace")
        head = int.from_bytes(txn.get(old, db=self.heads) or b"", "big")
        if head == 0:  # an append without events: version 0 says the stream does not exist
            txn.delete(old, db=self.heads)
            return _Progress(after=old)
        try:
            stream_type = self._first_type(old)
            stream_key(stream_type, old.decode())
        except (CorruptLog, InvalidCommand, UnicodeDecodeError) as error:
            self.step.not_rekeyed.append((stream_id, str(error)))
            return _Progress(after=old)
        return _Progress(
            after=progress.after,
            stream_id=stream_id,
            stream_type=stream_type,
            next_version=1,
            head=head,
            types=[stream_type],
        )

    def _first_type(self, old: bytes) -> str:
        """Return the type in the envelope of the stream's first event.

        Raises:
            CorruptLog: The index or the log lacks it, or its envelope is unreadable.
        """
        first = self.txn.get(old + _NUL + (1).to_bytes(8, "big"), db=self.streams)
        if first is None:
            raise CorruptLog(0, "the stream index has no version 1")
        position = int.from_bytes(first, "big")
        value = self.txn.get(first, db=self.log)
        if value is None:
            raise CorruptLog(position, "the stream index names a position the log lacks")
        return self.codec.stream_of(position, value)[1]

    def move(self, progress: _Progress, budget: int) -> int:
        """Move up to ``budget`` index entries of the stream in progress; return how many."""
        txn = self.txn
        old_prefix = progress.stream_id.encode() + _NUL
        new_prefix = stream_key(progress.stream_type, progress.stream_id) + _NUL
        last = min(progress.head, progress.next_version + budget - 1)
        versions = range(progress.next_version, last + 1)
        index = txn.cursor(db=self.streams)
        entries = index.getmulti([old_prefix + v.to_bytes(8, "big") for v in versions])
        positions = [position for _, position in entries]
        for key, value in txn.cursor(db=self.log).getmulti(positions):
            try:
                _, stream_type = self.codec.stream_of(int.from_bytes(key, "big"), value)
            except CorruptLog:
                continue  # reading it reports it; its index entry moves like any other
            if stream_type not in progress.types:
                progress.types.append(stream_type)
        index.putmulti([(new_prefix + key[-8:], position) for key, position in entries])
        for key, _ in entries:
            txn.delete(key, db=self.streams)
        progress.next_version = last + 1
        self.step.events += len(entries)
        return max(len(versions), 1)

    def finish(self, progress: _Progress) -> None:
        """Move the head and the snapshot of the stream in progress (its index has moved)."""
        txn = self.txn
        old = progress.stream_id.encode()
        new = stream_key(progress.stream_type, progress.stream_id)
        txn.put(new, progress.head.to_bytes(8, "big"), db=self.heads)
        txn.delete(old, db=self.heads)
        snapshot = txn.get(old, db=self.snapshots)
        if snapshot is not None:
            txn.delete(old, db=self.snapshots)
            if len(progress.types) == 1:  # a mixed stream's snapshot may be the other type's
                txn.put(new, snapshot, db=self.snapshots)
        if len(progress.types) > 1:
            self.step.mixed.append((progress.stream_id, list(progress.types)))
        self.step.streams += 1
