"""The order row fold shared by the order views (``views._order_rows.shared_evolve``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from views_kit import OrderLog, random_log

import views._order_rows as rows_module
from domain.orders import OrderCreated, OrderItemAdded, OrderShipped
from store import RecordedEvent
from views._order_rows import (
    ORDER_EVENTS,
    OrderEvent,
    OrderRow,
    evolve,
    haystack,
    shared_evolve,
)

Fold = Callable[[OrderRow | None, OrderEvent, int], OrderRow]
_ROW: msgspec.msgpack.Decoder[OrderRow] = msgspec.msgpack.Decoder(OrderRow)


def _copy(row: OrderRow) -> OrderRow:
    return _ROW.decode(msgspec.msgpack.encode(row))


class _Folder:
    """One view's rows: searching (keeps a search text, as order_search does) or not."""

    def __init__(self, *, searching: bool) -> None:
        self.searching = searching
        self.rows: dict[str, OrderRow] = {}

    def fold(self, record: RecordedEvent, fold: Fold) -> None:
        event = record.event
        assert isinstance(event, ORDER_EVENTS)
        order_id = event.order_id
        old = self.rows.get(order_id)
        new = fold(old, event, record.position)
        # As OrderSearchModel does: a new text only when the ids change; else the one carried.
        if self.searching and (old is None or {*new.lines} != {*old.lines}):
            new = msgspec.structs.replace(new, haystack=haystack(new))
        self.rows[order_id] = new

    def reload(self) -> None:
        """Its rows as read back from storage: equal values, none of the same objects."""
        self.rows = {key: _copy(row) for key, row in self.rows.items()}


def _encoded(folder: _Folder) -> dict[str, bytes]:
    # Bytes, not ==: a Decimal's exponent or a datetime's zone would differ unseen by ==.
    return {key: msgspec.msgpack.encode(row) for key, row in folder.rows.items()}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    searching=st.lists(st.booleans(), min_size=1, max_size=5),
    reloads=st.integers(0, 6),
)
def test_any_interleaving_of_views_folds_what_evolve_alone_folds(
    seed: int, searching: list[bool], reloads: int
) -> None:
    log = random_log(seed=seed, commands=120, customers=3, products=5)
    rng = random.Random(seed)
    shared = [_Folder(searching=flag) for flag in searching]
    alone = [_Folder(searching=flag) for flag in searching]
    done = [0] * len(shared)
    # Each view advances through the log in order, the views interleaved at random (a projector
    # steps them in any order, in batches), some restarting from storage now and then.
    while any(count < len(log.records) for count in done):
        index = rng.choice([i for i, count in enumerate(done) if count < len(log.records)])
        step = rng.randint(1, 12)
        for record in log.records[done[index] : done[index] + step]:
            shared[index].fold(record, shared_evolve)
            alone[index].fold(record, evolve)
        done[index] = min(done[index] + step, len(log.records))
        if reloads and rng.random() < 0.1:
            reloads -= 1
            shared[rng.randrange(len(shared))].reload()
    for with_memo, without in zip(shared, alone, strict=True):
        assert _encoded(with_memo) == _encoded(without)


def _created() -> OrderCreated:
    log = OrderLog()
    event = log.create("o-1", "c-1", ("p-1", 1, "2.50")).event
    assert isinstance(event, OrderCreated)
    return event


def _created_at(position: int) -> OrderCreated:
    return msgspec.structs.replace(_created(), order_id=f"o-{position}")


def _added(product: str = "p-2", price: str = "1.25") -> OrderItemAdded:
    return OrderItemAdded(order_id="o-1", product_id=product, quantity=2, price=Decimal(price))


def test_each_event_is_folded_once_for_every_view_sharing_its_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = shared_evolve(None, _created(), 1)
    calls: list[int] = []

    def counted(row: OrderRow | None, event: OrderEvent, position: int) -> OrderRow:
        calls.append(position)
        return evolve(row, event, position)

    monkeypatch.setattr(rows_module, "evolve", counted)
    added = _added()
    details = shared_evolve(first, added, 2)
    customers = shared_evolve(first, added, 2)  # the same row object
    searched = msgspec.structs.replace(first, haystack=haystack(first))
    search = shared_evolve(searched, added, 2)  # the same but for its search text
    assert calls == [2]
    assert details is customers
    assert search.haystack == searched.haystack  # carried over, as evolve does
    assert msgspec.structs.replace(search, haystack="") == details
    # An equal row decoded apart (read back from LMDB, restored from a snapshot): it gets the
    # same object, so the views share one row per order again.
    stats = shared_evolve(_copy(first), added, 2)
    assert calls == [2]
    assert stats is details
    # A row that differs is folded from itself, never answered with the recorded result.
    other = msgspec.structs.replace(_copy(first), status="cancelled")
    changed = shared_evolve(other, added, 2)
    assert calls == [2, 2]
    assert changed.status == "cancelled"
    assert changed is not details


def test_the_memo_steps_aside_while_views_do_not_share_and_comes_back() -> None:
    folds = rows_module._SharedFolds(size=64, window=16, bypass=32)
    calls: list[int] = []

    def fold_twice(position: int) -> None:
        # Two views folding one event object: shared while the memo is on.
        created = _created_at(position)
        one = folds.evolve(None, created, position)
        assert folds.evolve(None, created, position) == one

    original = rows_module.evolve

    def counted(row: OrderRow | None, event: OrderEvent, position: int) -> OrderRow:
        calls.append(position)
        return original(row, event, position)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows_module, "evolve", counted)
        fold_twice(1)
        assert calls == [1]  # on: the second view got the first one's row
        # A rebuild-like stretch: every event folded once, by one view. Under an eighth of hits
        # in a window turns the memo off for the next 32 calls.
        for position in range(2, 2 + 16):
            folds.evolve(None, _created_at(position), position)
        calls.clear()
        fold_twice(100)
        assert calls == [100, 100]  # off: each view folds for itself
        for position in range(200, 200 + 32):
            folds.evolve(None, _created_at(position), position)
        calls.clear()
        fold_twice(300)
        assert calls == [300]  # on again


def test_another_event_object_or_another_row_at_a_position_is_folded_afresh() -> None:
    created = _created()
    row = evolve(None, created, 1)
    one = shared_evolve(row, _added("p-2"), 2)
    # Another engine's event at the same position (another object): never the memo's answer.
    two = shared_evolve(row, _added("p-3", "9.00"), 2)
    assert [line.product_id for line in two.lines] == ["p-1", "p-3"]
    assert two.total_amount == Decimal("20.50")
    # The same event object with another input row: computed from that row.
    shipped = OrderShipped(order_id="o-1", shipped_at=created.created_at)
    assert shared_evolve(one, shipped, 3).lines == one.lines
    assert shared_evolve(two, shipped, 3) == evolve(two, shipped, 3)


def test_a_poison_event_raises_for_every_view() -> None:
    event = OrderShipped(order_id="nobody", shipped_at=_created().created_at)
    for _ in range(3):  # nothing is remembered of a fold that raised
        with pytest.raises(ValueError, match="does not exist"):
            shared_evolve(None, event, 7)


def test_equal_lines_are_one_object_and_the_shared_lines_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rows hold their lines for as long as a memory view runs: equal lines are one object.
    monkeypatch.setattr(rows_module, "_SHARED_LINES", {})
    monkeypatch.setattr(rows_module, "LINES_SHARED", 4)
    log = OrderLog()
    log.create("o-1", "c-1", ("sku-1", 2, "1.50"), ("sku-2", 1, "3.00"))
    log.create("o-2", "c-2", ("sku-2", 1, "3.00"), ("sku-1", 2, "1.50"))
    first, second = (rows_module.evolve(None, r.event, r.position) for r in log.records)  # type: ignore[arg-type]
    assert first.lines[0] is second.lines[1]
    assert first.lines[1] is second.lines[0]
    assert first.lines[0] == rows_module.RowLine("sku-1", 2, "1.50")
    for quantity in range(3, 9):  # past the bound: the shared lines start over
        assert rows_module.row_line("sku-1", quantity, "1.50").quantity == quantity
    assert len(rows_module._SHARED_LINES) <= 4
