"""The view interface, and the storage seam that lets a read model be written once.

A *view* is what the projector feeds and the query router asks: :class:`View`. It has a name, a
checkpoint (the last log position it applied) and a backend (in memory or LMDB).

A *read model* (:class:`ReadModel`) is the logic of one view, written once over a tiny storage
abstraction (:class:`Storage`: keyed :class:`Table` rows plus position-ordered :class:`Index`
entries). Each backend wraps a read model into a :class:`View`: ``MemoryView`` keeps the tables in
dicts, ``LmdbView`` keeps them in an LMDB sub-database and commits rows and checkpoint in one
transaction. So every read model exists on both backends and one test suite covers both.

Rule for read models: in ``apply``, do every read and every computation first, then write. The
memory backend relies on it so that an event that raises leaves no partial effect behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import msgspec

from domain.errors import InvalidQuery
from store import RecordedEvent

__all__ = [
    "Backend",
    "Index",
    "ReadModel",
    "RowFold",
    "Storage",
    "Table",
    "View",
    "check_query",
    "check_query_type",
    "check_up_to",
    "model_version",
    "row_decoder",
    "row_fold_of",
    "row_writer",
]

Backend = Literal["memory", "lmdb"]

V = TypeVar("V")


class Table(Protocol[V]):
    """Rows of one type keyed by a string (an order id, a product id...).

    Rows are immutable values (frozen msgspec Structs): a change is a ``put`` of a new row.
    """

    def get(self, key: str) -> V | None:
        """Return the row stored under ``key``, or None."""
        ...

    def put(self, key: str, value: V) -> None:
        """Store ``value`` under ``key``, replacing any previous row."""
        ...

    def delete(self, key: str) -> None:
        """Remove the row under ``key``, if any."""
        ...

    def values(self) -> Iterator[V]:
        """Iterate over every row (memory: insertion order; LMDB: stored-key order).

        LMDB's stored-key order is the keys' UTF-8 order, except that canonical UUIDs (stored
        packed, see :mod:`views._lmdb_keys`) come first, in their own order.

        The iterator is only valid inside the ``apply``/``query`` call that produced it.
        """
        ...


class Index(Protocol):
    """Per group (e.g. a customer id), string values ordered by log position."""

    def add(self, group: str, position: int, value: str) -> None:
        """Add ``value`` to ``group`` at ``position`` (a position appears once per group)."""
        ...

    def scan(self, group: str, *, reverse: bool = False) -> Iterator[str]:
        """Iterate over the values of ``group`` by position, ascending unless ``reverse``."""
        ...


class Storage(Protocol):
    """What a read model sees of its backend during one ``apply`` or ``query``."""

    def table(self, name: str, row_type: type[V]) -> Table[V]:
        """Return the table ``name`` whose rows are ``row_type`` (a msgspec-encodable type)."""
        ...

    def index(self, name: str) -> Index:
        """Return the index ``name``."""
        ...


class ReadModel(Protocol):
    """The logic of one view, independent of where its rows live.

    Pass read models to ``Engine.open(views=[...])``; the engine binds each to a backend
    (``view_backends``; see :mod:`views._binding`) and routes every query whose type is in
    ``query_types`` to it.

    Optional attributes, read when present (plain attributes or methods, no base class needed):
    ``validate(query)`` raises :class:`~domain.errors.InvalidQuery` for bad arguments before
    any row is read or any wait for ``after=`` begins; ``default_backend`` (``"memory"`` or
    ``"lmdb"``) when ``view_backends`` does not say; ``version`` (int, default 1) to bump when
    the rows' shape changes (older memory snapshots are then ignored, and an LMDB view kept by
    another version is emptied and replayed from the log at open); ``skip_unknown = True`` to
    skip undecodable events (counted); ``isolated = True`` for a projector of its own;
    ``row_fold`` (a :class:`RowFold`) with ``apply_row(storage, row)`` for a model whose state
    is a function of one row per key, which lets a rebuild fold the rows first and write each
    once (see :class:`RowFold`).

    Attributes:
        name: The view's name (also its checkpoint key and sub-database name in LMDB).
        tags: The event tags it handles; None means every event.
        query_types: The query classes it answers (each by exactly one view of an engine).
    """

    name: str
    tags: frozenset[str] | None
    query_types: tuple[type, ...]

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold one recorded event into ``storage``: read and compute first, then write.

        Raises:
            Exception: The event cannot be applied (the projector retries, then parks it).
        """
        ...

    def query(self, storage: Storage, query: object) -> object:
        """Answer ``query`` (already validated) from ``storage``."""
        ...


class RowFold(Protocol):
    """How a rebuild folds the log into one row per key, before any view writes a row.

    A read model whose every effect on its storage is a function of the current row of each
    key (the order views: of each order's row) may declare ``row_fold`` and
    ``apply_row(storage, row)``: writing a key's final row must leave the storage as applying
    the key's events one by one would (``apply_row`` reads the key's stored row itself, if it
    needs the old one). A rebuild then folds each event into a plain state per key, the
    cheapest step there is, and each view writes each row once: an order of 20 events costs
    its views one write and one index update instead of twenty. Views whose models share the
    same ``row_fold`` object share the fold. Views at position 0 catch up the same way (a new
    directory, a memory view without a usable snapshot); the live path, and any view that
    holds rows, still applies event by event.
    """

    def fold(
        self, states: dict[str, Any], records: Sequence[RecordedEvent]
    ) -> list[tuple[RecordedEvent, Exception]]:
        """Fold ``records`` in order into ``states`` (key -> this fold's state of it).

        Returns:
            The records that cannot be folded (a poison event), each with its error; each
            leaves ``states`` as it was before it (the rebuild parks it and goes on).
        """
        ...

    def rows(self, states: dict[str, Any]) -> Iterable[Any]:
        """Return the row of every state, in the order the keys first appeared."""
        ...


@runtime_checkable
class View(Protocol):
    """A read model bound to a backend, with its own checkpoint.

    One writer thread (the projector) calls ``apply``, ``clear`` and ``adopt``; any other thread
    may call ``query`` and ``position`` at the same time and never sees a half-applied event.

    Attributes:
        name: The view's name: ``order_details``, ``customer_orders``, ``order_search``...
        backend: ``"memory"`` (rebuilt from the log at open) or ``"lmdb"`` (persistent).
        tags: The event tags it handles; None means every event. The projector may pre-filter.
        skip_unknown: Opt-in: events the codec cannot decode are skipped (and counted by the
            projector) instead of stopping the view.
        query_types: The query classes this view answers.
    """

    name: str
    backend: Backend
    tags: frozenset[str] | None
    skip_unknown: bool
    query_types: tuple[type, ...]

    def position(self) -> int:
        """Return the checkpoint: the last log position applied (0 = none)."""
        ...

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        """Apply ``events`` in order, then set the checkpoint to ``up_to``.

        Events at or below the current position are ignored (re-applying is harmless).
        ``up_to`` must be at least the last event's position; events may be pre-filtered by tag,
        so ``up_to`` can be higher. LMDB commits the rows and the checkpoint in one transaction;
        memory applies event by event and, if one raises, keeps everything before it.

        Raises:
            ValueError: ``up_to`` is below the last event's position.
            Exception: Whatever the read model raised for a poison event.
        """
        ...

    def reapply(self, event: RecordedEvent) -> None:
        """Apply one event at or below the checkpoint without moving it (a parked event's retry).

        Raises:
            Exception: Whatever the read model raised; nothing of the event remains.
        """
        ...

    def query(self, query: object) -> object:
        """Answer ``query``.

        Raises:
            InvalidQuery: The query is malformed or this view does not answer its type.
        """
        ...

    def new_shadow(self) -> View:
        """Return an empty copy at position 0 to rebuild into, independent of this view."""
        ...

    def adopt(self, shadow: View) -> None:
        """Atomically replace this view's rows and position with ``shadow``'s; drop the shadow."""
        ...

    def clear(self) -> None:
        """Remove every row and reset the position to 0."""
        ...

    def close(self) -> None:
        """Release the view; any later call raises ``EngineClosed``. Idempotent."""
        ...


def check_up_to(name: str, events: Sequence[RecordedEvent], up_to: int) -> None:
    """Raise ValueError if ``up_to`` is below the last event's position (a projector bug)."""
    if events and up_to < events[-1].position:
        raise ValueError(
            f"view {name!r}: up_to={up_to} is below the last event's position "
            f"{events[-1].position}; pass the position the batch was read up to"
        )


def check_query_type(view: View, query: object) -> None:
    """Raise InvalidQuery if ``view`` does not answer queries of ``query``'s type."""
    if not isinstance(query, view.query_types):
        raise InvalidQuery(
            "query",
            type(query).__name__,
            f"view {view.name!r} answers " + ", ".join(t.__name__ for t in view.query_types),
        )


def check_query(view: View, model: object, query: object) -> None:
    """Raise InvalidQuery if ``view`` does not answer ``query`` or its read model refuses it.

    ``model`` is the view's read model; its optional ``validate(query)`` is called.
    """
    check_query_type(view, query)
    validate = getattr(model, "validate", None)
    if callable(validate):
        validate(query)


def model_version(model: object) -> int:
    """Return a read model's ``version``, 1 if it declares none.

    A view's stored rows (an LMDB slot, a memory snapshot) are only trusted by the same version,
    so a read model bumps it whenever the shape of its rows changes.

    Raises:
        TypeError: The read model's ``version`` is not an int.
    """
    version = getattr(model, "version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        name = getattr(model, "name", "?")
        raise TypeError(f"read model {name!r}: version must be an int, not {version!r}")
    return version


def row_fold_of(model: object) -> RowFold | None:
    """Return a read model's ``row_fold`` if it also has ``apply_row`` (see :class:`RowFold`)."""
    fold = getattr(model, "row_fold", None)
    return fold if fold is not None and callable(getattr(model, "apply_row", None)) else None


def row_writer(name: str, model: object) -> Callable[[Storage, Any], None]:
    """Return a read model's ``apply_row``.

    Raises:
        TypeError: The model has no ``row_fold`` and ``apply_row`` (a rebuild bug).
    """
    if row_fold_of(model) is None:
        raise TypeError(f"view {name!r}: its read model has no row_fold and apply_row")
    apply_row: Callable[[Storage, Any], None] = getattr(model, "apply_row")  # noqa: B009 - typed
    return apply_row


_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def row_decoder(row_type: type[V]) -> msgspec.msgpack.Decoder[V]:
    """Return the (shared) msgpack decoder of ``row_type``, for either backend's stored rows."""
    decoder = _DECODERS.get(row_type)
    if decoder is None:
        # Built once per row type; decoding is stateless, so threads share them.
        decoder = _DECODERS[row_type] = msgspec.msgpack.Decoder(row_type)
    return decoder
