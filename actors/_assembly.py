"""Assembling an engine's parts at open, and taking them apart again when a step fails.

`Engine.open` checks its arguments, then :func:`assemble` opens the log, the views environment,
the dispatcher, the writer, the read side, one registry per decider and the retention and saga
machinery, in that order; a failure at any step closes what was opened before it, newest first,
so a refused open leaves the directory free (its lock released) and no thread behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from actors._admission import codec_for
from actors._aggregate import utc_now
from actors._dispatch import Dispatcher
from actors._idempotency import Idempotency
from actors._read_wiring import start_read_side
from actors._registry import AggregateRegistry
from actors._retention import Retention
from actors._sagas import Sagas
from actors._supervision import FaultSeam
from actors._tail import EventTail
from actors._writer import LogWriter
from store import Codec, Durability, EventStore, ViewStore
from store._retention import RecentCommands

__all__ = ["VIEWS_DIR", "assemble", "take_apart"]

VIEWS_DIR = "views"
"""The views environment's directory, inside the data directory."""


def assemble(
    path: str | os.PathLike[str],
    *,
    deciders: Sequence[Any],
    codec: Codec | None,
    durability: Durability,
    map_size: int,
    views: Sequence[Any] | None,
    view_backends: Mapping[str, Literal["memory", "lmdb"]] | None,
    projection: Literal["in-process", "process"],
    skip_unknown_events: bool,
    sagas: Sequence[Any],
    window: float | RecentCommands | None,
    workers: int,
    max_batch: int,
    max_live_aggregates: int,
    snapshot_every: int,
    clock: Callable[[], datetime] | None,
    store_wrapper: Callable[[EventStore], Any] | None,
    tune_gc: bool,
    fault_seam: FaultSeam | None,
) -> dict[str, Any]:
    """Open every part of an engine over ``path``; return them by ``Engine.__init__``'s names.

    Raises:
        Whatever a step raised (``LogLocked``, ``InvalidView``, ``ProjectionUnavailable``...),
        after closing the parts opened before it.
    """
    codec = codec_for(deciders, codec)
    Path(path).mkdir(parents=True, exist_ok=True)
    store = EventStore.open(path, codec=codec, durability=durability, map_size=map_size)
    parts: dict[str, Any] = {"store": store}
    try:
        store.drop_legacy_views()
        parts["view_store"] = view_store = ViewStore.open(Path(path) / VIEWS_DIR, head=store.head())
        write_store = store_wrapper(store) if store_wrapper is not None else store
        # Daemon workers: a program that exits without closing the engine must not hang on
        # them; the engine's atexit hook still drains and closes every open engine.
        parts["dispatcher"] = dispatcher = Dispatcher(
            workers=workers, name="aggregates", daemon=True
        )
        # Committed events reach every projector and saga decoded once (none without either).
        followed = views is None or len(views) > 0 or len(sagas) > 0
        tail = EventTail(store) if followed else None
        parts["writer"] = writer = LogWriter.start(
            write_store, max_batch=max_batch, tail=tail, codec=codec, fault_seam=fault_seam
        )
        parts["read"] = start_read_side(
            store,
            writer,
            view_store,
            tail,
            views=views,
            view_backends=view_backends,
            projection=projection,
            skip_unknown=skip_unknown_events,
            fault_seam=fault_seam,
        )
        routes: dict[type, AggregateRegistry] = {}
        registries = []
        for decider in deciders:
            registry = AggregateRegistry(
                decider=decider,
                store=write_store,
                writer=writer,
                dispatcher=dispatcher,
                max_live=max_live_aggregates,
                snapshot_every=snapshot_every,
                clock=clock or utc_now,
                tune_gc=tune_gc,
                fault_seam=fault_seam,
            )
            registries.append(registry)
            for command_type in decider.command_types:
                routes[command_type] = registry
        parts.update(
            routes=routes,
            registries=registries,
            idempotency=Idempotency(write_store),
            retention=Retention(
                store,
                window=window,
                clock=clock or utc_now,
                schemas={d.stream_type: d.state_schema_version for d in deciders},
            ),
            sagas=Sagas(sagas, store, tail=tail, fault_seam=fault_seam),
        )
    except BaseException:
        take_apart(parts)
        raise
    return parts


def take_apart(parts: Mapping[str, Any]) -> None:
    """Close the parts :func:`assemble` opened (any prefix of them), newest first."""
    read = parts.get("read")
    if read is not None:
        read.close()
    writer = parts.get("writer")
    if writer is not None:
        writer.stop(timeout=10)
    dispatcher = parts.get("dispatcher")
    if dispatcher is not None:
        dispatcher.shutdown(timeout=10)
    view_store = parts.get("view_store")
    if view_store is not None:
        view_store.close()
    parts["store"].close()
