"""The order row every order view folds from the events, and the fold itself.

A row holds the fields of the public :class:`OrderView` flat, beside what later events and sorts
need, and builds the view when a query answers (:meth:`OrderRow.view`). :func:`evolve` is pure:
it computes the new row, never writes, which is what lets read models compute first and write
last.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Final

import msgspec

from domain.orders import (
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
    order_total,
)
from views._order_types import OrderView, SearchOrders

__all__ = [
    "LINES_SHARED",
    "ORDER_EVENTS",
    "ORDER_TAGS",
    "SEP",
    "OrderEvent",
    "OrderRow",
    "RowLine",
    "evolve",
    "haystack",
    "micros",
    "row_line",
    "row_matcher",
    "shared_evolve",
    "texts_of",
]

ORDER_EVENTS: Final = (
    OrderCreated,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
    OrderCancelled,
)
ORDER_TAGS: Final = frozenset(str(t.__struct_config__.tag) for t in ORDER_EVENTS)
"""The tags of the order events: what every order view handles."""

OrderEvent = OrderCreated | OrderItemAdded | OrderItemRemoved | OrderShipped | OrderCancelled

# Search matches the ids joined by a separator; a query containing it falls back to per-id tests.
SEP: Final = "\x00"


class RowLine(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One line of an order as a view keeps it: its price as exact decimal text.

    Not :class:`~domain.orders.OrderItem`: decoding a Decimal costs msgspec about as much as the
    rest of a row, and encoding one twice a string, so a 20-line row stored with Decimals took
    5.9 us to decode and 2.6 us to encode against 2.4 and 0.8 us with text, at half the bytes
    (1,013 against 488). The text is ``str(price)``, which ``Decimal`` reads back exactly (same
    digits, same exponent); only a merge or a removal needs the number.
    """

    product_id: str
    quantity: int
    price: str


class OrderRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An order as a view stores it: the fields of its public view plus what later events need.

    Flat, not holding an :class:`OrderView`: a nested view is encoded as a map (the public type
    keeps its JSON shape), and its field names took 75 of a stored row's ~356 bytes; the two
    LMDB views keep a row per order. It also spares the fold a second ``replace`` per event
    and a memory view an object per order; a query builds the view it answers (~0.3 us).
    """

    order_id: str
    customer_id: str
    status: str
    total_amount: Decimal
    item_count: int
    created_at: datetime
    shipped_at: datetime | None
    position: int  # of the creating event: the tie-breaker of every sort
    lines: tuple[RowLine, ...]
    # created_at in microseconds since the epoch: sorting 100k rows by it is several times faster
    # than by aware datetimes (each comparison of those calls utcoffset()).
    created_us: int
    haystack: str = ""  # casefolded ids for search; empty in the other views

    def view(self) -> OrderView:
        """Return the order as queries show it."""
        return OrderView(
            self.order_id,
            self.customer_id,
            self.status,
            self.total_amount,
            self.item_count,
            self.created_at,
            self.shipped_at,
        )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Return ``moment`` in microseconds since the epoch (a naive time is taken as UTC)."""
    # A naive time is taken as UTC (the domain only makes aware ones): it must not break a sort.
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


_QUANTITY: Final = attrgetter("quantity")


# A memory view keeps every order's lines for as long as it runs; each decoded event brings its
# own copy of a product id and each str() a new price text, ~110 bytes a line that a catalogue's
# worth of shared strings replaces (measured: the search view 4.1 -> 3.5 KB per order). Interned
# strings are freed with their last user, so an unbounded catalogue cannot leak.
_intern: Final = sys.intern
# The lines themselves repeat too (a product, a quantity, its price: a catalogue of 500 products
# makes ~2,500 distinct lines for any number of orders), and each one is a 40-byte object: lines
# are frozen, so every row shares one per distinct value (8 bytes a line instead of 48).
# Bounded: a catalogue too large to repeat clears it and starts over, sharing less, never
# holding more than LINES_SHARED of them beyond what the rows hold.
_SHARED_LINES: dict[RowLine, RowLine] = {}
LINES_SHARED: Final = 1 << 16


def row_line(product_id: str, quantity: int, price: str) -> RowLine:
    """Return the line ``(product_id, quantity, price)``, the same object for equal lines.

    Thread-safe under the GIL (a race only makes two equal lines where one would do).
    """
    line = RowLine(product_id, quantity, price)
    shared = _SHARED_LINES.get(line)
    if shared is None:
        if len(_SHARED_LINES) >= LINES_SHARED:
            _SHARED_LINES.clear()
        shared = _SHARED_LINES[line] = RowLine(_intern(product_id), quantity, _intern(price))
    return shared


def _line(item: OrderItem) -> RowLine:
    return row_line(item.product_id, item.quantity, str(item.price))


def _total(lines: tuple[RowLine, ...]) -> Decimal:
    # The left fold of domain.orders.order_total, from the same Decimal(0): equal digit for digit.
    return sum((Decimal(line.price) * line.quantity for line in lines), Decimal(0))


def _add_item(row: OrderRow, event: OrderItemAdded) -> OrderRow:
    # Running totals: only the added units change the sums. Decimal addition is exact here (the
    # domain caps prices, quantities and lines far below the context's 28 digits), and its exponent
    # is the smaller of the operands', so the total equals a recomputation digit for digit.
    lines = row.lines
    product_id = event.product_id
    # A plain loop: faster than list.index() at an order's size, and a miss (a new product, the
    # common case) raises nothing.
    for index, line in enumerate(lines):
        if line.product_id == product_id:
            merged = row_line(line.product_id, line.quantity + event.quantity, line.price)
            lines = (*lines[:index], merged, *lines[index + 1 :])
            total = row.total_amount + Decimal(line.price) * event.quantity
            break
    else:
        lines = (*lines, row_line(product_id, event.quantity, str(event.price)))
        # Appending the new line last: the same left fold order_total() would do.
        total = row.total_amount + event.price * event.quantity
    return msgspec.structs.replace(
        row, total_amount=total, item_count=row.item_count + event.quantity, lines=lines
    )


def _remove_item(row: OrderRow, event: OrderItemRemoved) -> OrderRow:
    product_id = event.product_id
    lines = tuple(ln for ln in row.lines if ln.product_id != product_id)
    return msgspec.structs.replace(
        row,
        # Recomputed, not subtracted: a difference would keep the removed price's exponent
        # (10.5 - 0.50 is 10.00, not 10.0) and show differently. Removals are rare.
        total_amount=_total(lines),
        item_count=sum(map(_QUANTITY, lines)),
        lines=lines,
    )


def evolve(row: OrderRow | None, event: OrderEvent, position: int) -> OrderRow:
    """Return the order row after ``event``; pure: computes, never writes.

    Raises:
        ValueError: The log is inconsistent (an order created twice, or an event for an order
            that was never created); the projector parks the event.
    """
    # The most frequent event first: most of an order's events add items.
    if row is not None and isinstance(event, OrderItemAdded):
        return _add_item(row, event)
    if isinstance(event, OrderCreated):
        if row is not None:
            raise ValueError(
                f"OrderCreated at position {position}: order {event.order_id!r} already exists "
                f"(created at position {row.position})"
            )
        return OrderRow(
            order_id=event.order_id,
            customer_id=_intern(event.customer_id),  # one string per customer, not per order
            status="pending",
            total_amount=order_total(event.items),
            item_count=sum(map(_QUANTITY, event.items)),
            created_at=event.created_at,
            shipped_at=None,
            position=position,
            lines=tuple(map(_line, event.items)),
            created_us=micros(event.created_at),
        )
    if row is None:
        tag = type(event).__struct_config__.tag
        raise ValueError(f"{tag} at position {position}: order {event.order_id!r} does not exist")
    if isinstance(event, OrderItemRemoved):
        return _remove_item(row, event)
    if isinstance(event, OrderShipped):
        return msgspec.structs.replace(row, status="shipped", shipped_at=event.shipped_at)
    return msgspec.structs.replace(row, status="cancelled")


class _Fold(msgspec.Struct, frozen=True, gc=False):
    """One entry of :class:`_SharedFolds`: an event, the row it was folded from, the result.

    Not a tuple: a tuple is tracked by the cyclic collector until a collection finds it holds
    only untracked objects, and the memo makes one per event (up to 8k alive); it holds only
    untracked structs, so it can never be part of a cycle.
    """

    event: OrderEvent
    seen: OrderRow | None
    new: OrderRow


class _SharedFolds:
    """The rows :func:`evolve` returned for the latest events, shared by the order views.

    Every order view folds the same row from the same decoded event: the projector fans one
    decoded batch out to all of them, so four views called ``evolve`` four times per event (a
    third of their work under a write load, profiled). The first view to fold an event records
    its result; a view folding the same event object from the same row gets that result. Safe
    because ``evolve`` is pure and an entry is only used for the very event object it was
    computed from (never another engine's, nor a rebuild's own scan) and an input row that is
    the recorded one or equal to it (the search view's rows differ only by their search text,
    which entries leave out and ``evolve`` carries over). Rows equal but decoded apart (an LMDB
    view reading a row back from LMDB, a memory view restored from its snapshot) get the
    recorded result too: the views then hold one object per order again, which their row
    caches and the memo's next hits rely on, and an equality test costs less than the fold
    (0.3 against 0.8 us at 9 lines, measured).

    Entries keep rows alive, which costs every fold (measured: ~1 us with 8k entries, from the
    caches), so the memo steps aside while it does not pay: a window of calls with under an
    eighth of hits (a rebuild of many orders, where every view decodes its own rows) turns it
    off for the next ``bypass`` calls, then it tries again. Two generations bound the entries
    to the last ``size`` to 2 x ``size`` events. Thread-safe under the GIL (each dict operation
    is atomic; a lost entry or count is only a miss).
    """

    def __init__(self, size: int = 4096, window: int = 4096, bypass: int = 65536) -> None:
        self._size = size
        self._window = window  # calls per hit-rate window
        self._bypass = bypass  # calls folded directly after a window of too few hits
        self._new: dict[int, _Fold] = {}
        self._old: dict[int, _Fold] = {}
        self._calls = 0
        self._hits = 0
        self._direct = 0  # calls left to fold without the memo

    def evolve(self, row: OrderRow | None, event: OrderEvent, position: int) -> OrderRow:
        """Return ``evolve(row, event, position)``, computed once per event for all views."""
        if self._direct:
            self._direct -= 1
            return evolve(row, event, position)
        self._calls += 1
        if self._calls >= self._window:
            if self._hits * 8 < self._calls:
                self._direct = self._bypass
                self._new, self._old = {}, {}
            self._calls = self._hits = 0
        text = "" if row is None else row.haystack
        core = msgspec.structs.replace(row, haystack="") if text and row is not None else row
        entry = self._new.get(position) or self._old.get(position)
        if entry is not None and entry.event is event:
            seen = entry.seen
            if seen is core or (seen is not None and core is not None and seen == core):
                self._hits += 1
                new = entry.new
                return msgspec.structs.replace(new, haystack=text) if text else new
            return evolve(row, event, position)  # another row: folded, the first one's kept
        new = evolve(core, event, position)  # raises for a poison event: nothing is kept
        if len(self._new) >= self._size:
            self._old, self._new = self._new, {}
        self._new[position] = _Fold(event, core, new)
        return msgspec.structs.replace(new, haystack=text) if text else new


shared_evolve: Final = _SharedFolds().evolve
""":func:`evolve`, computed once per decoded event for every order view (see ``_SharedFolds``)."""


def haystack(row: OrderRow) -> str:
    """Return ``row``'s ids (order, customer, products) joined by :data:`SEP`, casefolded."""
    ids = [row.order_id, row.customer_id, *(ln.product_id for ln in row.lines)]
    return SEP.join(ids).casefold()


def texts_of(row: OrderRow) -> set[str]:
    """Return the casefolded ids of ``row`` (order, customer, products) as a set."""
    text = row.haystack
    if text.count(SEP) == len(row.lines) + 1:
        # No id holds the separator (the usual case): the search text splits back into ids.
        return set(text.split(SEP))
    ids = (row.order_id, row.customer_id, *(line.product_id for line in row.lines))
    return {item.casefold() for item in ids}


_PLUS: Final = Decimal("Infinity")
_MINUS: Final = Decimal("-Infinity")


def row_matcher(query: SearchOrders) -> Callable[[OrderRow], bool]:
    """Return the row-level test of ``query``'s filters: status, total range, id substring.

    The one definition of what a search matches, shared by the scanning model and the indexed
    view (the index only narrows which rows it is asked about).
    """
    needle = query.query.casefold()
    status = query.status
    low = _MINUS if query.min_total is None else query.min_total
    high = _PLUS if query.max_total is None else query.max_total

    def found(row: OrderRow) -> bool:
        if SEP not in needle:
            return needle in row.haystack
        # The separator may be inside an id too: test each id on its own.
        return any(needle in text for text in texts_of(row))

    def matches(row: OrderRow) -> bool:
        return (
            (status is None or row.status == status)
            and low <= row.total_amount <= high
            and (not needle or found(row))
        )

    return matches
