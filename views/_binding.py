"""Binding read models to backends: what ``Engine.open(views=..., view_backends=...)`` does.

A user hands the engine *read models* (the :class:`~views.ReadModel` shape: logic only) and says
where each lives (``view_backends``: ``"memory"`` or ``"lmdb"`` per view name). This module turns
them into :class:`~views.View` objects the projector feeds and the router asks. Objects that are
already views (bound by the caller, e.g. ``MemoryView(model)`` or a test's wrapper) are kept as
they are, so both forms may be mixed in one list.

Where a read model lives, first match wins:

1. ``view_backends[name]``, if given;
2. the read model's own ``default_backend`` attribute, if it declares one (the order read models
   do: ``order_details`` and ``customer_orders`` are ``"lmdb"``);
3. ``"memory"``.

Without a views store (unit tests) a *default* of ``"lmdb"`` falls back to memory, while an
explicit ``"lmdb"`` in ``view_backends`` is refused. A read model may also provide
``memory_view(*, skip_unknown) -> View``: a specialised in-memory view used instead of the
generic :class:`MemoryView` (the order search does, for its indexes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from domain.errors import InvalidView, UnknownView
from store import ViewStore
from views._lmdb import LmdbView
from views._memory import MemoryView
from views._view import Backend, ReadModel, View

__all__ = ["BACKENDS", "bind_views", "is_read_model", "split_lmdb"]

BACKENDS: Final = ("memory", "lmdb")
"""The backends a view can live in."""

_DATA: Final = ("name", "tags", "query_types")
_METHODS: Final = ("apply", "query")


def _missing(item: object) -> list[str]:
    missing = [attr for attr in _DATA if not hasattr(item, attr)]
    missing += [attr for attr in _METHODS if not callable(getattr(item, attr, None))]
    return missing


def is_read_model(item: object) -> bool:
    """Return True if ``item`` has the :class:`~views.ReadModel` shape and is not a bound view."""
    return not isinstance(item, View) and not _missing(item)


def _checked(items: Sequence[Any]) -> list[str]:
    """Check the shapes, names and backends of ``items``; return their names."""
    names: list[str] = []
    for item in items:
        if not isinstance(item, View) and _missing(item):
            raise InvalidView(
                repr(item),
                "is neither a read model nor a bound view; a read model needs name, tags, "
                f"query_types, apply(storage, record) and query(storage, query) (missing: "
                f"{', '.join(_missing(item))}); see views.ReadModel",
            )
        name = item.name
        if not isinstance(name, str) or not name:
            raise InvalidView(repr(item), f"its name must be a non-empty str, not {name!r}")
        if name in names:
            raise InvalidView(
                repr(name),
                "two views have this name; a name is a view's checkpoint and storage key, "
                "give each view its own",
            )
        if not isinstance(item.query_types, tuple) or not all(
            isinstance(query_type, type) for query_type in item.query_types
        ):
            raise InvalidView(repr(name), "query_types must be a tuple of classes")
        default = getattr(item, "default_backend", "memory")
        if not isinstance(item, View) and default not in BACKENDS:
            raise InvalidView(
                repr(name), f"default_backend must be 'memory' or 'lmdb', not {default!r}"
            )
        names.append(name)
    return names


def _default(model: ReadModel, store: ViewStore | None) -> Backend:
    if store is None:
        return "memory"  # a default, not a demand: without a store, memory
    backend: Backend = getattr(model, "default_backend", "memory")
    return backend


def _bind(
    model: ReadModel,
    backend: Backend,
    store: ViewStore | None,
    *,
    skip_unknown: bool,
) -> View:
    if backend == "lmdb":
        if store is None:
            raise InvalidView(repr(model.name), "cannot live in LMDB without a store")
        return LmdbView(model, store, skip_unknown=skip_unknown)
    special = getattr(model, "memory_view", None)
    if callable(special):
        view: View = special(skip_unknown=skip_unknown)
        return view
    return MemoryView(model, skip_unknown=skip_unknown)


def bind_views(
    items: Sequence[ReadModel | View],
    store: ViewStore | None,
    *,
    backends: Mapping[str, Backend] | None = None,
    skip_unknown: bool = False,
) -> list[View]:
    """Bind each read model of ``items`` to its backend; keep bound views as they are.

    Everything is checked before anything is bound, so a bad list opens nothing.

    Args:
        items: Read models (``views.ReadModel`` shape) and/or views (``views.View``), in order.
        store: The open views store LMDB views live in; None keeps every view in memory.
        backends: Per view name, ``"memory"`` or ``"lmdb"`` (see the module's notes for the
            defaults).
        skip_unknown: Let the projector skip (and count) events the codec cannot decode; a read
            model declaring ``skip_unknown = True`` opts in on its own.

    Returns:
        The views, in the order of ``items``.

    Raises:
        InvalidView: An item is neither a read model nor a view, two share a name, a backend is
            neither ``"memory"`` nor ``"lmdb"``, ``"lmdb"`` is asked for without a store, or
            ``backends`` asks to move a view that was passed already bound elsewhere.
        UnknownView: ``backends`` names no view of ``items``.
    """
    names = _checked(items)
    chosen = dict(backends or {})
    for name, backend in chosen.items():
        if name not in names:
            raise UnknownView(name, names)
        if backend not in BACKENDS:
            raise InvalidView(
                repr(name), f"its backend must be 'memory' or 'lmdb', not {backend!r}"
            )
    for item in items:
        if isinstance(item, View) and chosen.get(item.name, item.backend) != item.backend:
            raise InvalidView(
                repr(item.name),
                f"was passed already bound to {item.backend!r}, and view_backends asks for "
                f"{chosen[item.name]!r}; pass its read model instead to choose its backend",
            )
    views: list[View] = []
    for item in items:
        if isinstance(item, View):
            views.append(item)
            continue
        backend = chosen.get(item.name) or _default(item, store)
        skip = skip_unknown or bool(getattr(item, "skip_unknown", False))
        views.append(_bind(item, backend, store, skip_unknown=skip))
    return views


def split_lmdb(
    items: Sequence[ReadModel | View], backends: Mapping[str, Backend] | None = None
) -> tuple[list[ReadModel], list[ReadModel | View]]:
    """Split ``items`` into the read models kept in LMDB and the rest, checking them all.

    What a projection process takes (the LMDB read models: their rows are in a file another
    process can write) and what stays in the engine's process (memory views, and views passed
    already bound: they are tied to this process's objects).

    Raises:
        InvalidView: As :func:`bind_views`.
        UnknownView: ``backends`` names no view of ``items``.
    """
    names = _checked(items)
    chosen = dict(backends or {})
    for name, backend in chosen.items():
        if name not in names:
            raise UnknownView(name, names)
        if backend not in BACKENDS:
            raise InvalidView(
                repr(name), f"its backend must be 'memory' or 'lmdb', not {backend!r}"
            )
    moved: list[ReadModel] = []
    kept: list[ReadModel | View] = []
    for item in items:
        if (
            not isinstance(item, View)
            and (chosen.get(item.name) or getattr(item, "default_backend", "memory")) == "lmdb"
        ):
            moved.append(item)
        else:
            kept.append(item)
    return moved, kept
