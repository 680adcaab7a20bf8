"""Wiring the read side: which views stay in the engine's process, which go to a projection child.

In ``projection="process"`` mode every read model goes to a child
(:class:`~actors._projection_process.ProjectionProcess`), so the engine's process does no view
work: its LMDB views are read here from their checkpoints (:class:`views.FollowedView`), its
memory views are queried there through the pipe (:class:`~actors._remote_view.RemoteView`).
What stays here: views passed already bound (tied to this process's objects), and memory read
models the child cannot import (a class defined in ``__main__``: kept here, logged). An LMDB
read model the child cannot import is refused at open: its rows are in a file only the child
writes in this mode.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pykka

from actors._projection_child import ChildSpec
from actors._projection_process import ProjectionProcess
from actors._readside import SNAPSHOT_EVERY, ReadSide
from actors._remote_view import RemoteView
from actors._supervision import FaultSeam
from actors._tail import EventTail
from actors._writer import LogWriter
from domain.errors import InvalidView
from store import Codec, EventStore, ViewStore, get_logger
from views import FollowedView, View, split_lmdb
from views.orders import order_read_models

__all__ = ["check_projection", "start_read_side"]

log = get_logger(__name__)


def check_projection(projection: object) -> None:
    """Raise ValueError unless ``projection`` names a projection mode."""
    if projection not in {"in-process", "process"}:
        raise ValueError(f"projection must be 'in-process' or 'process', got {projection!r}")


def _unsendable(obj: Any, classes: Iterable[Any]) -> str | None:
    """Why ``obj`` cannot be sent to a projection process by reference, or None if it can.

    ``classes`` are what ``obj`` is pickled by reference to (its class, a codec's event types
    and upcasters): one defined in ``__main__`` pickles here but means another thing there.
    """
    local = next((c for c in classes if getattr(c, "__module__", None) == "__main__"), None)
    if local is not None:
        return f"{getattr(local, '__qualname__', local)} is defined in __main__"
    try:
        pickle.dumps(obj)
    except Exception as error:  # noqa: BLE001 - pickle raises several types for one cause
        return repr(error)
    return None


def _check_sendable(model: Any) -> None:
    """Raise InvalidView unless ``model`` can be sent to a projection process (by reference)."""
    problem = _unsendable(model, [type(model)])
    if problem is not None:
        raise InvalidView(
            repr(model.name),
            "cannot be sent to the projection process: define its class at module level in "
            f"a module that process can import (not __main__, not inside a function): {problem}",
        )


def _check_codec_sendable(codec: Codec, view: str) -> None:
    """Raise InvalidView unless the projection process can rebuild ``codec`` (by reference).

    The child decodes the log with the same event types and upcasters: one it cannot import
    would fail there at every restart, so it is refused here, at open, with the fix to make.
    """
    problem = _unsendable(codec, [*codec.event_types, *codec.upcasters])
    if problem is not None:
        raise InvalidView(
            view,
            "its events cannot be decoded in the projection process: define the codec's event "
            f"types and upcasters at module level in a module that process can import: {problem}",
        )


def _split(
    views: Sequence[Any] | None, view_backends: Mapping[str, Literal["memory", "lmdb"]] | None
) -> tuple[list[Any], list[Any], list[Any]]:
    """Return the LMDB read models, the memory read models a child can take, and the rest."""
    items = order_read_models() if views is None else list(views)
    lmdb_models, kept = split_lmdb(items, view_backends)
    memory_models: list[Any] = []
    local: list[Any] = []
    for item in kept:
        if isinstance(item, View):
            local.append(item)
            continue
        problem = _unsendable(item, [type(item)])
        if problem is None:
            memory_models.append(item)
        else:
            log.info("view_kept_in_engine_process", view=item.name, reason=problem)
            local.append(item)
    return lmdb_models, memory_models, local


def start_read_side(
    store: EventStore,
    writer: pykka.ActorRef[LogWriter],
    view_store: ViewStore,
    tail: EventTail | None,
    *,
    views: Sequence[Any] | None,
    view_backends: Mapping[str, Literal["memory", "lmdb"]] | None,
    projection: Literal["in-process", "process"],
    skip_unknown: bool,
    fault_seam: FaultSeam | None,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> ReadSide:
    """Start the read side; in process mode, its projection process too (see the module)."""

    def subscribe(ref: Any) -> None:
        writer.proxy().subscribe(ref).get(timeout=30)

    if projection != "process":
        return ReadSide.start(
            store,
            subscribe,
            view_store=view_store,
            tail=tail,
            views=views,
            view_backends=view_backends,
            skip_unknown=skip_unknown,
            fault_seam=fault_seam,
            snapshot_every=snapshot_every,
        )
    lmdb_models, memory_models, local = _split(views, view_backends)
    for model in lmdb_models:
        _check_sendable(model)
    moved = [*lmdb_models, *memory_models]
    if moved:
        _check_codec_sendable(store.codec, moved[0].name)
    local_names = {item.name for item in local}
    local_backends = {
        name: backend for name, backend in (view_backends or {}).items() if name in local_names
    }
    spec = ChildSpec(
        path=str(store.path),
        views_dir=str(view_store.path),
        codec=store.codec,
        models=moved,
        skip_unknown=skip_unknown,
        backends={
            **{model.name: "lmdb" for model in lmdb_models},
            **{model.name: "memory" for model in memory_models},
        },
        snapshot_every=snapshot_every,
    )
    remote = ProjectionProcess(spec, store=store, names=frozenset(m.name for m in moved))
    # Views the projection process keeps are only read (LMDB) or asked (memory) here.
    served: list[View] = [FollowedView(model, view_store) for model in lmdb_models]
    served += [RemoteView(model, remote) for model in memory_models]
    read = ReadSide.start(
        store,
        subscribe,
        view_store=view_store,
        tail=tail,
        views=local,
        view_backends=local_backends,
        skip_unknown=skip_unknown,
        fault_seam=fault_seam,
        snapshot_every=snapshot_every,
        served=served,
    )
    if not moved:
        return read
    remote.router = read.router
    remote.served = {view.name: view for view in served}
    remote.waiting = lambda: read.queries_waiting > 0
    remote.wanted = read.waiting_views
    read.remote = remote
    try:
        subscribe(remote)
        remote.start()
    except BaseException:
        read.close()
        raise
    return read
