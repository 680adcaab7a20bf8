"""The decoded rows an LMDB view keeps across batches: never ahead of, nor apart from, LMDB."""

import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from views_kit import (
    ADDRESS,
    EPOCH,
    Mutating,
    OrderLog,
    check_answers,
    open_store,
    poison,
    random_log,
    reference,
)

from domain.orders import AddOrderItem, CreateOrder, OrderItem
from store import ViewStore
from views import LmdbView
from views._order_rows import OrderRow
from views._row_cache import KEPT_ROWS, RowCache, cacheable
from views._view import Storage
from views.orders import (
    CustomerOrdersModel,
    GetOrderById,
    OrderDetailsModel,
    OrderStatsModel,
    OrderView,
)

MODELS = (OrderDetailsModel, CustomerOrdersModel, OrderStatsModel)
_ITEM = OrderItem(product_id="p1", quantity=1, price=Decimal("1.50"))
_P2 = Decimal("2.25")


@pytest.fixture
def log() -> OrderLog:
    return random_log(seed=23, commands=160)


def test_a_table_of_large_rows_keeps_fewer_of_them_within_the_byte_budget() -> None:
    cache = RowCache(limit=100_000, budget=1_000_000)
    assert cache.limit("big") == 100_000  # nothing written yet: the row count alone
    batch = {f"k{number}": number for number in range(500)}
    cache.keep("big", {}, batch, b"", row_bytes=500.0)  # 500-byte rows: 2,000 fit the budget
    assert cache.limit("big") == 2000
    for start in range(500, 10_000, 500):
        rows = {f"k{number}": number for number in range(start, start + 500)}
        cache.keep("big", {}, rows, b"", row_bytes=500.0)
        assert len(cache.table("big")) <= 2000
    assert cache.table("big").get("k9999") == 9999  # the newest rows are the ones kept
    cache.keep("small", {}, {"a": 1}, b"", row_bytes=10.0)
    assert cache.limit("small") == 100_000  # the row count bounds small rows; tables apart
    cache.keep("huge", {}, {"a": 1}, b"", row_bytes=10**9)
    assert cache.limit("huge") == 1024  # however large, a batch's worth stays


def test_the_mean_row_size_follows_the_rows_as_they_grow() -> None:
    cache = RowCache(limit=100_000, budget=1_000_000)
    cache.keep("t", {}, {"a": 1}, b"", row_bytes=100.0)
    assert cache.limit("t") == 10_000
    for _ in range(40):
        cache.keep("t", {}, {"a": 1}, b"", row_bytes=1000.0)
    assert cache.limit("t") < 1100  # close to 1,000 rows of 1,000 bytes


def test_an_lmdb_view_learns_its_rows_size_from_what_it_writes(
    tmp_path: Path, log: OrderLog
) -> None:
    with open_store(tmp_path / "views") as store:
        view = LmdbView(OrderDetailsModel(), store)
        head, tail = log.records[:-20], log.records[-20:]
        view.apply(head, head[-1].position)
        # Order rows encode to a few hundred bytes: the row count, not the budget, bounds them.
        assert view._cache.limit("order") == KEPT_ROWS
        # Against a 10 MB budget the rows' measured size decides (this log's rows: tens of bytes).
        measured = RowCache(budget=10_000_000)
        view._cache = measured  # empty: the next batch reads its rows from LMDB
        view.apply(tail, tail[-1].position)
        assert 5_000 <= measured.limit("order") < KEPT_ROWS
        check_answers([view], log, only=True)


def test_the_cache_keeps_written_rows_over_read_ones_and_halves_when_full() -> None:
    cache = RowCache(limit=4)
    cache.keep("t", {"a": 1, "b": 2}, {"b": 3, "c": None}, b"tc")
    assert cache.table("t") == {"a": 1, "b": 3, "c": None}
    assert cache.top("t") is None  # unknown stays unknown: LMDB is asked once
    assert cache.set_top("t", b"tc") == b"tc"
    cache.keep("t", {}, {"d": 4, "e": 5}, b"te")
    assert cache.table("t") == {"d": 4, "e": 5}  # over the limit: the older half went
    assert cache.top("t") == b"te"
    cache.keep("t", {}, {}, b"")
    assert cache.top("t") == b"te"  # a bound only grows
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    assert cache.top("t") is None


def test_only_rows_that_cannot_change_are_kept() -> None:
    class Frozen(msgspec.Struct, frozen=True):
        n: int

    class Mutable(msgspec.Struct):
        n: int

    assert cacheable(Frozen)
    assert cacheable(int)
    assert cacheable(str)
    assert not cacheable(Mutable)
    assert not cacheable(dict)
    assert not cacheable(list)
    assert cacheable(OrderRow)


def test_a_batch_that_raises_leaves_nothing_of_it_in_the_cache(
    tmp_path: Path, log: OrderLog
) -> None:
    with open_store(tmp_path / "v") as store:
        views = [LmdbView(model(), store) for model in MODELS]
        for view in views:
            view.apply(log.records[:80], 80)
            with pytest.raises(ValueError, match="never-created"):
                view.apply([*log.records[80:], poison(log)], len(log.records) + 1)
            # The next batch computes from what was committed (position 80), not from the
            # rows the failed batch had folded.
            view.apply(log.records[80:], len(log.records))
        check_answers(views, log, only=True)


def _failing_once(store: ViewStore, *, after_commit: bool) -> Callable[..., Any]:
    real = store.write
    calls = {"n": 0}

    def write(fn: Callable[[Any], Any]) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            if after_commit:
                real(fn)  # committed, yet reported as failed: the outcome is unknown
            raise OSError("injected write failure")
        return real(fn)

    return write


@pytest.mark.parametrize("after_commit", [False, True])
def test_a_failed_commit_empties_the_cache(
    tmp_path: Path, log: OrderLog, monkeypatch: pytest.MonkeyPatch, after_commit: bool
) -> None:
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        view.apply(log.records[:80], 80)
        monkeypatch.setattr(store, "write", _failing_once(store, after_commit=after_commit))
        with pytest.raises(OSError, match="injected"):
            view.apply(log.records[80:120], 120)
        # Read back from LMDB: moved only if the batch was committed.
        assert view.position() == (120 if after_commit else 80)
        monkeypatch.undo()
        # The projector goes on from the view's position: LMDB alone says what the rows are.
        view.apply(log.records[view.position() :], len(log.records))
        check_answers([view], log, only=True)


def test_a_row_changed_in_place_by_a_failing_batch_is_read_again_from_lmdb(
    tmp_path: Path, log: OrderLog
) -> None:
    with open_store(tmp_path / "v") as store:
        view = LmdbView(Mutating(), store)
        view.apply(log.records[:10], 10)
        with pytest.raises(ValueError, match="poison"):
            view.apply([poison(log)], len(log.records) + 1)
        view.apply(log.records[10:20], 20)
        assert view.query("all") == [record.position for record in log.records[:20]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(
        st.text(alphabet="ab9~é", min_size=1, max_size=4), min_size=1, max_size=8, unique=True
    ),
    picks=st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=30),
)
def test_rows_are_found_whatever_the_order_of_their_keys(
    ids: list[str], picks: list[tuple[int, bool]]
) -> None:
    # Orders are created in an arbitrary key order, then changed one event per batch, with new
    # views (a cold cache, its key bound read again) now and then: a bound below a committed key
    # would make an order "not exist" and its event fail.
    log = OrderLog()
    for order_id in ids:
        log.run(
            CreateOrder(order_id=order_id, customer_id="c", items=[_ITEM], shipping_address=ADDRESS)
        )
    for pick, _ in picks:
        log.run(AddOrderItem(order_id=ids[pick % len(ids)], product_id="p2", quantity=1, price=_P2))
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp)) as store:
        views = [LmdbView(model(), store) for model in MODELS]
        reopen = iter([flag for _, flag in picks])
        for record in log.records:
            for view in views:
                view.apply([record], record.position)
            if next(reopen, False):
                views = [LmdbView(model(), store) for model in MODELS]
        check_answers(views, log, only=True)


# ---------------------------------------------------------------- queries from the kept rows


def test_point_queries_of_kept_rows_need_no_transaction_and_match_lmdb(
    tmp_path: Path, log: OrderLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        view.apply(log.records, len(log.records))
        expected = {
            order_id: reference(log, GetOrderById(order_id)) for order_id in [*log.states, "nope"]
        }
        reads = {"n": 0}
        real = store.read

        def counting(fn: Callable[[Any], Any]) -> Any:
            reads["n"] += 1
            return real(fn)

        monkeypatch.setattr(store, "read", counting)
        for order_id in log.states:
            assert view.query(GetOrderById(order_id)) == expected[order_id]
        assert reads["n"] == 0  # every order was kept by the batch that wrote it
        assert view.query(GetOrderById("nope")) is None  # not kept: asked of LMDB
        assert reads["n"] == 1


def test_a_query_sees_each_batch_once_its_position_moved(tmp_path: Path, log: OrderLog) -> None:
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        for end in range(10, len(log.records) + 10, 10):
            view.apply(log.records[:end], min(end, len(log.records)))
            part = log.upto(min(end, len(log.records)))
            for order_id in part.states:
                assert view.query(GetOrderById(order_id)) == reference(part, GetOrderById(order_id))


def test_a_cleared_or_swapped_view_answers_from_lmdb_again(tmp_path: Path, log: OrderLog) -> None:
    some = next(iter(log.states))
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        view.apply(log.records, len(log.records))
        view.clear()
        assert view.query(GetOrderById(some)) is None
        shadow = view.new_shadow()
        shadow.apply(log.records[:5], 5)
        view.adopt(shadow)
        assert view.query(GetOrderById(some)) == reference(log.upto(5), GetOrderById(some))


class _Swallowing(OrderDetailsModel):
    """A read model whose query catches every Exception: the fallback must still happen."""

    def query(self, storage: Storage, query: object) -> OrderView | None:
        try:
            return super().query(storage, query)
        except Exception:  # what a careless model might do
            return OrderView("swallowed", "", "", Decimal(0), 0, EPOCH)


def test_a_model_catching_every_exception_still_falls_back_to_lmdb(
    tmp_path: Path, log: OrderLog
) -> None:
    with open_store(tmp_path / "v") as store:
        view = LmdbView(_Swallowing(), store)
        view.apply(log.records, len(log.records))
        # Not kept (never written): answered from LMDB, never "swallowed".
        assert view.query(GetOrderById("nope")) is None
        some = next(iter(log.states))
        assert view.query(GetOrderById(some)) == reference(log, GetOrderById(some))
