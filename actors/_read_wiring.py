"""Wiring the read side: which views stay in the engine's process, which go to a projection child.

Memory views (and views passed already bound) stay in the engine's process whatever the mode:
their rows live in its memory. In ``projection="process"`` mode the LMDB views are projected by
a child (:class:`~actors._projection_process.ProjectionProcess`) and only read here, from their
checkpoints (:class:`views.FollowedView`).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pykka

from actors._projection_child import ChildSpec
from actors._projection_process import ProjectionProcess
from actors._readside import ReadSide
from actors._supervision import FaultSeam
from actors._tail import EventTail
from actors._writer import LogWriter
from domain.errors import InvalidView
from store import Codec, EventStore, ViewStore
from views import FollowedView, View, split_lmdb
from views.orders import order_read_models

__all__ = ["check_projection", "start_read_side"]


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
) -> ReadSide:
    """Start the read side; in process mode, its LMDB views' projection process too.

    Memory views (and views passed already bound) stay in this process whatever the mode: their
    rows live in this process's memory, so no other process could answer for them.
    """
    moved: list[Any] = []
    local_views, local_backends = views, view_backends
    if projection == "process":
        items = order_read_models() if views is None else list(views)
        moved, local_views = split_lmdb(items, view_backends)
        names = {model.name for model in moved}
        local_backends = {
            name: backend for name, backend in (view_backends or {}).items() if name not in names
        }
    for model in moved:
        _check_sendable(model)
    if moved:
        _check_codec_sendable(store.codec, moved[0].name)
    # Views a projection process keeps are only read here, from their checkpoints.
    served: list[View] = [FollowedView(model, view_store) for model in moved]

    def subscribe(ref: Any) -> None:
        writer.proxy().subscribe(ref).get(timeout=30)

    read = ReadSide.start(
        store,
        subscribe,
        view_store=view_store,
        tail=tail,
        views=local_views,
        view_backends=local_backends,
        skip_unknown=skip_unknown,
        fault_seam=fault_seam,
        served=served,
    )
    if not moved:
        return read
    spec = ChildSpec(
        path=str(store.path),
        views_dir=str(view_store.path),
        codec=store.codec,
        models=moved,
        skip_unknown=skip_unknown,
    )
    remote = ProjectionProcess(
        spec, store=store, router=read.router, served={view.name: view for view in served}
    )
    read.remote = remote
    try:
        subscribe(remote)
        remote.start()
    except BaseException:
        read.close()
        raise
    return read
