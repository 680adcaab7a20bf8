"""The shared suite: every order view, on every backend, against the reference model."""

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import get_args

import msgspec
import pytest
from structlog.testing import capture_logs
from views_kit import (
    EPOCH,
    OrderLog,
    Rig,
    encoded,
    open_rig,
    random_log,
    reference,
    sample_queries,
)

from domain.errors import EngineClosed, InvalidQuery
from domain.orders import AddOrderItem, CancelOrder, OrderShipped, RemoveOrderItem, ShipOrder
from views import Backend, View
from views.orders import (
    ORDER_TAGS,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    OrderView,
    Page,
    SearchOrders,
)

BACKENDS: tuple[Backend, ...] = get_args(Backend)


@pytest.fixture(params=BACKENDS)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with open_rig(request.param, tmp_path / "data") as opened:
        yield opened


@pytest.fixture(scope="module")
def big_log() -> OrderLog:
    return random_log(seed=7, commands=400)


def _small_log() -> OrderLog:
    log = OrderLog()
    log.create("o-1", "alice", ("apple", 2, "1.50"), ("pear", 1, "4.00"), at=1)
    log.create("o-2", "bob", ("apple", 1, "1.50"), at=2)
    log.create("o-3", "alice", ("kiwi", 5, "0.20"), at=2)
    log.do(AddOrderItem(order_id="o-2", product_id="Plum", quantity=3, price=Decimal("2.00")))
    log.do(RemoveOrderItem(order_id="o-1", product_id="pear"))
    log.do(ShipOrder(order_id="o-1"), at=9)
    log.do(CancelOrder(order_id="o-3", reason="no longer needed"))
    return log


# ---------------------------------------------------------------- answers


def test_every_sample_query_matches_the_reference(rig: Rig, big_log: OrderLog) -> None:
    rig.apply(big_log.records)
    for query in sample_queries(big_log):
        assert rig.ask(query) == reference(big_log, query), query


def test_every_order_is_found_by_id_and_unknown_ids_give_none(rig: Rig, big_log: OrderLog) -> None:
    rig.apply(big_log.records)
    for order_id in big_log.states:
        assert rig.ask(GetOrderById(order_id)) == reference(big_log, GetOrderById(order_id))
    assert rig.ask(GetOrderById("nope")) is None


def test_an_order_view_follows_its_events(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records)
    shipped = rig.ask(GetOrderById("o-1"))
    assert isinstance(shipped, OrderView)
    assert shipped.status == "shipped"
    assert shipped.total_amount == Decimal("3.00")
    assert shipped.item_count == 2
    assert shipped.shipped_at is not None
    added = rig.ask(GetOrderById("o-2"))
    assert isinstance(added, OrderView)
    assert (added.total_amount, added.item_count, added.shipped_at) == (Decimal("7.50"), 4, None)


def test_customer_orders_are_newest_first_for_every_customer_and_status(
    rig: Rig, big_log: OrderLog
) -> None:
    rig.apply(big_log.records)
    customers = {state.customer_id for state in big_log.states.values()} | {"nobody"}
    for customer in sorted(customers):
        for status in (None, "pending", "shipped", "cancelled"):
            query = GetCustomerOrders(customer, status=status, page_size=4)
            assert rig.ask(query) == reference(big_log, query)


def test_customer_orders_sort_by_creating_position_not_by_time(rig: Rig) -> None:
    log = OrderLog()
    log.create("late-clock", "carol", ("a", 1, "1"), at=50)
    log.create("early-clock", "carol", ("a", 1, "1"), at=0)
    rig.apply(log.records)
    page = rig.ask(GetCustomerOrders("carol"))
    assert isinstance(page, Page)
    assert [view.order_id for view in page.items] == ["early-clock", "late-clock"]


@pytest.mark.parametrize("sort_by", ["created_at", "total_amount", "item_count"])
@pytest.mark.parametrize("sort_order", ["asc", "desc"])
def test_search_sorts_and_breaks_ties_by_position_in_the_same_direction(
    rig: Rig, big_log: OrderLog, sort_by: str, sort_order: str
) -> None:
    rig.apply(big_log.records)
    for page in (1, 2, 7):
        query = SearchOrders(sort_by=sort_by, sort_order=sort_order, page=page, page_size=9)
        assert rig.ask(query) == reference(big_log, query)


def test_search_filters_by_text_status_and_inclusive_totals(rig: Rig, big_log: OrderLog) -> None:
    rig.apply(big_log.records)
    totals = sorted({v.total_amount for v in _views(rig, big_log)})
    low, high = totals[len(totals) // 4], totals[3 * len(totals) // 4]
    for text in ("", "ord-00", "CUST-2", "Sku-03", "sku-1", "zzz"):
        for status in (None, "pending", "shipped", "cancelled"):
            for bounds in ((None, None), (low, None), (None, high), (low, high), (high, low)):
                query = SearchOrders(
                    query=text, status=status, min_total=bounds[0], max_total=bounds[1]
                )
                assert rig.ask(query) == reference(big_log, query), query


def _views(rig: Rig, log: OrderLog) -> list[OrderView]:
    found = [rig.ask(GetOrderById(order_id)) for order_id in log.states]
    return [view for view in found if isinstance(view, OrderView)]


def test_search_matches_only_products_still_in_the_order(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records)
    assert _ids(rig.ask(SearchOrders(query="PEAR"))) == []  # removed from o-1
    assert _ids(rig.ask(SearchOrders(query="plum"))) == ["o-2"]  # added to o-2
    assert _ids(rig.ask(SearchOrders(query="ALICE", sort_order="asc"))) == ["o-1", "o-3"]
    assert _ids(rig.ask(SearchOrders(query="o-2"))) == ["o-2"]


def test_search_total_bounds_are_inclusive(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records)
    exact = SearchOrders(min_total=Decimal("3.00"), max_total=Decimal(3))
    assert _ids(rig.ask(exact)) == ["o-1"]
    assert _ids(rig.ask(SearchOrders(min_total=Decimal(7), max_total=Decimal("7.5")))) == ["o-2"]


def _ids(answer: object) -> list[str]:
    assert isinstance(answer, Page)
    return [view.order_id for view in answer.items]


def test_stats_count_statuses_revenue_and_units_of_orders_not_cancelled(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records)
    assert rig.ask(GetOrderStats()) == OrderStats(
        total_orders=3,
        by_status={"pending": 1, "shipped": 1, "cancelled": 1},
        revenue=Decimal("3.00"),
        # kiwi (cancelled) and pear (removed) sold nothing; ties go by product id ("P" < "a").
        top_products=[("Plum", 3), ("apple", 3)],
    )
    assert rig.ask(GetOrderStats()) == reference(log, GetOrderStats())


def test_stats_list_ten_products_with_ties_by_product_id(rig: Rig) -> None:
    log = OrderLog()
    lines = [(f"p{i:02d}", 2 if i % 3 else 5, "1") for i in range(14)]
    log.create("o-1", "dave", *lines)
    rig.apply(log.records)
    stats = rig.ask(GetOrderStats())
    assert isinstance(stats, OrderStats)
    assert stats.top_products == [
        ("p00", 5),
        ("p03", 5),
        ("p06", 5),
        ("p09", 5),
        ("p12", 5),
        ("p01", 2),
        ("p02", 2),
        ("p04", 2),
        ("p05", 2),
        ("p07", 2),
    ]


def test_empty_views_answer_with_zeroes_and_empty_pages(rig: Rig) -> None:
    assert rig.ask(GetOrderStats()) == OrderStats(
        total_orders=0,
        by_status={"pending": 0, "shipped": 0, "cancelled": 0},
        revenue=Decimal(0),
        top_products=[],
    )
    empty = Page[OrderView](items=[], total=0, page=1, page_size=20, total_pages=0)
    assert rig.ask(SearchOrders()) == empty
    assert rig.ask(GetCustomerOrders("alice")) == empty
    assert rig.ask(GetOrderById("o-1")) is None


# ---------------------------------------------------------------- pagination


def _pages(rig: Rig, count: int, page: int, page_size: int) -> list[Page[OrderView]]:
    answers = [
        rig.ask(SearchOrders(page=page, page_size=page_size)),
        rig.ask(GetCustomerOrders("eve", page=page, page_size=page_size)),
    ]
    pages = [answer for answer in answers if isinstance(answer, Page)]
    assert len(pages) == 2
    for answer in pages:
        assert (answer.total, answer.page, answer.page_size) == (count, page, page_size)
    return pages


def _eve_orders(rig: Rig, count: int) -> list[str]:
    log = OrderLog()
    for i in range(count):
        log.create(f"o-{i:03d}", "eve", ("thing", 1, str(i)))
    rig.apply(log.records)
    return [f"o-{i:03d}" for i in reversed(range(count))]  # newest first


def test_the_last_page_is_partial_and_pages_beyond_it_are_empty(rig: Rig) -> None:
    newest_first = _eve_orders(rig, 23)
    for answer in _pages(rig, 23, 3, 10):
        assert _ids(answer) == newest_first[20:]
        assert answer.total_pages == 3
    for answer in _pages(rig, 23, 4, 10):
        assert _ids(answer) == []
        assert answer.total_pages == 3
    for answer in _pages(rig, 23, 10**30, 10):
        assert _ids(answer) == []


def test_page_size_one_and_a_thousand_are_allowed(rig: Rig) -> None:
    newest_first = _eve_orders(rig, 23)
    for answer in _pages(rig, 23, 23, 1):
        assert _ids(answer) == newest_first[22:]
        assert answer.total_pages == 23
    for answer in _pages(rig, 23, 1, 1000):
        assert _ids(answer) == newest_first
        assert answer.total_pages == 1


def test_answers_encode_to_json_and_decode_back(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records)
    page = rig.ask(SearchOrders())
    assert msgspec.json.decode(encoded(page), type=Page[OrderView]) == page
    stats = rig.ask(GetOrderStats())
    assert msgspec.json.decode(encoded(stats), type=OrderStats) == stats
    query = SearchOrders(query="x", min_total=Decimal("1.5"))
    assert msgspec.json.decode(encoded(query), type=SearchOrders) == query


# ---------------------------------------------------------------- the view contract


def test_views_name_their_tags_and_query_types(rig: Rig) -> None:
    expected = {
        "order_details": GetOrderById,
        "customer_orders": GetCustomerOrders,
        "order_search": SearchOrders,
        "order_stats": GetOrderStats,
    }
    for name, view in rig.views.items():
        assert isinstance(view, View)
        assert view.backend == rig.backend
        assert view.query_types == (expected[name],)
        assert view.tags == ORDER_TAGS
        assert view.skip_unknown is False


def test_a_view_rejects_a_query_type_it_does_not_answer(rig: Rig) -> None:
    with pytest.raises(InvalidQuery) as raised:
        rig.views["order_details"].query(GetOrderStats())
    assert raised.value.field == "query"


def test_a_view_validates_the_queries_it_answers(rig: Rig) -> None:
    with pytest.raises(InvalidQuery):
        rig.views["order_search"].query(SearchOrders(page=0))


def test_events_at_or_below_the_position_are_ignored(rig: Rig, big_log: OrderLog) -> None:
    records = big_log.records
    rig.apply(records[:250])
    rig.apply(records[100:])  # overlaps: 100..249 were applied already
    rig.apply(records)
    for view in rig.views.values():
        assert view.position() == len(records)
    for query in sample_queries(big_log):
        assert rig.ask(query) == reference(big_log, query)


def test_up_to_moves_the_position_past_filtered_events(rig: Rig) -> None:
    log = _small_log()
    rig.apply(log.records, up_to=len(log.records) + 5)
    rig.apply([], up_to=len(log.records) + 9)
    for view in rig.views.values():
        assert view.position() == len(log.records) + 9
    rig.apply([], up_to=2)  # never moves back
    assert rig.views["order_stats"].position() == len(log.records) + 9


def test_up_to_below_the_last_event_is_refused(rig: Rig) -> None:
    log = _small_log()
    with pytest.raises(ValueError, match="up_to"):
        rig.views["order_details"].apply(log.records, 2)
    assert rig.views["order_details"].position() == 0


def test_events_of_other_aggregates_are_ignored(rig: Rig) -> None:
    log = _small_log()
    stranger = msgspec.structs.replace(
        log.records[0], position=len(log.records) + 1, event=GetOrderStats()
    )
    rig.apply([*log.records, stranger])
    assert rig.ask(GetOrderStats()) == reference(log, GetOrderStats())
    assert rig.views["order_stats"].position() == stranger.position


def test_a_failing_event_leaves_the_events_before_it_and_nothing_of_itself(rig: Rig) -> None:
    log = _small_log()
    good = log.records[:4]
    poison = msgspec.structs.replace(
        log.records[5], position=5, event=OrderShipped(order_id="o-unknown", shipped_at=EPOCH)
    )
    later = msgspec.structs.replace(log.records[4], position=6)
    rig.apply(good[:2])
    before = {name: view.position() for name, view in rig.views.items()}
    for view in rig.views.values():
        with pytest.raises(ValueError, match="o-unknown"):
            view.apply([*good[2:], poison, later], 6)
    prefix = log.upto(4 if rig.backend == "memory" else 2)
    for name, view in rig.views.items():
        # memory: event by event, up to the last good one; LMDB: the batch is one transaction.
        assert view.position() == (4 if rig.backend == "memory" else before[name])
    for query in sample_queries(prefix):
        assert rig.ask(query) == reference(prefix, query)


def test_a_shadow_starts_empty_and_adopting_it_swaps_rows_and_position(
    rig: Rig, big_log: OrderLog
) -> None:
    small = _small_log()
    for name, live in rig.views.items():
        live.apply(small.records, len(small.records))
        shadow = live.new_shadow()
        assert shadow.position() == 0
        assert shadow.name == name
        probe = next(q for q in sample_queries(big_log) if isinstance(q, live.query_types))
        empty_log = OrderLog()
        assert shadow.query(probe) == reference(empty_log, probe)
        shadow.apply(big_log.records, len(big_log.records))
        # The live view is untouched by its shadow, and keeps applying meanwhile.
        assert live.query(probe) == reference(small, probe)
        assert live.position() == len(small.records)
        live.adopt(shadow)
        assert live.position() == len(big_log.records)
        assert live.query(probe) == reference(big_log, probe)
        with pytest.raises(EngineClosed):
            shadow.position()


def test_a_view_keeps_applying_after_adopting_a_shadow(rig: Rig, big_log: OrderLog) -> None:
    records = big_log.records
    for view in rig.views.values():
        view.apply(records[:50], 50)
        shadow = view.new_shadow()
        shadow.apply(records[:300], 300)
        view.adopt(shadow)
        view.apply(records, len(records))
    for query in sample_queries(big_log):
        assert rig.ask(query) == reference(big_log, query)


def test_a_view_refuses_to_adopt_anything_but_its_own_shadow(rig: Rig) -> None:
    details, search = rig.views["order_details"], rig.views["order_search"]
    with pytest.raises(TypeError):
        details.adopt(search.new_shadow())
    with pytest.raises(TypeError):
        details.adopt(details)
    shadow = details.new_shadow()
    details.adopt(shadow)
    with pytest.raises((TypeError, EngineClosed)):
        details.adopt(shadow)  # discarded after the first adopt


def test_clear_empties_a_view_and_resets_its_position(rig: Rig, big_log: OrderLog) -> None:
    rig.apply(big_log.records)
    for view in rig.views.values():
        view.clear()
        assert view.position() == 0
    empty = OrderLog()
    for query in sample_queries(big_log):
        assert rig.ask(query) == reference(empty, query)
    rig.apply(big_log.records)
    assert rig.ask(GetOrderStats()) == reference(big_log, GetOrderStats())


def test_a_closed_view_raises_engine_closed(rig: Rig) -> None:
    for view in rig.views.values():
        view.close()
        view.close()  # idempotent
        with pytest.raises(EngineClosed):
            view.position()
        with pytest.raises(EngineClosed):
            view.query(GetOrderStats())
        with pytest.raises(EngineClosed):
            view.apply([], 1)


def test_adopt_and_clear_are_logged_with_the_view_name(rig: Rig) -> None:
    view = rig.views["order_stats"]
    with capture_logs() as logs:
        view.adopt(view.new_shadow())
        view.clear()
    events = [(entry["event"], entry["view"]) for entry in logs if "view" in entry]
    assert ("view_adopted", "order_stats") in events
    assert ("view_cleared", "order_stats") in events
