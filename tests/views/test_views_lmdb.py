"""What only the LMDB backend promises: rows and checkpoint in one transaction, kept on disk."""

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs
from views_kit import (
    EPOCH,
    OrderLog,
    check_answers,
    open_store,
    random_log,
    reference,
    sample_queries,
)

from domain.errors import InvalidView, UnknownView
from domain.orders import OrderShipped
from store import RecordedEvent, ViewStore
from views import LmdbView, MemoryView, View
from views._followed import FollowedView
from views._lmdb_storage import VERSIONS_DB
from views._search import SearchView
from views.orders import (
    DEFAULT_BACKENDS,
    QUERY_VIEW,
    CustomerOrdersModel,
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderDetailsModel,
    OrderSearchModel,
    OrderStatsModel,
    SearchOrders,
    order_views,
)

MODELS = (OrderDetailsModel, CustomerOrdersModel, OrderSearchModel, OrderStatsModel)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def log() -> OrderLog:
    return random_log(seed=11, commands=150)


def _lmdb_views(store: ViewStore) -> list[View]:
    return [LmdbView(model(), store) for model in MODELS]


def test_rows_and_checkpoint_survive_a_reopen(data: Path, log: OrderLog) -> None:
    with open_store(data) as store:
        for view in _lmdb_views(store):
            view.apply(log.records[:100], 100)
            view.apply(log.records[100:], len(log.records) + 3)
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            assert view.position() == len(log.records) + 3
            assert store.checkpoint(view.name) == len(log.records) + 3
        check_answers(views, log)


def test_rows_read_back_after_a_reopen_become_one_object_for_both_views(
    data: Path, log: OrderLog
) -> None:
    # After a restart each LMDB view decodes its own copy of a row from LMDB; the shared fold
    # answers an equal row with the result it recorded, so one event later the two views keep
    # the same object again (not two ~2 KB copies per order in their row caches).
    first, rest = log.records[:60], log.records[60:]
    with open_store(data) as store:
        for view in (LmdbView(OrderDetailsModel(), store), LmdbView(CustomerOrdersModel(), store)):
            view.apply(first, first[-1].position)
    old_orders = {_order_of(record) for record in first}
    with open_store(data) as store:
        details = LmdbView(OrderDetailsModel(), store)
        customers = LmdbView(CustomerOrdersModel(), store)
        for record in rest:  # as the projector steps them: the same event objects, in turn
            details.apply([record], record.position)
            customers.apply([record], record.position)
        touched = {_order_of(record) for record in rest} & old_orders
        kept = details._cache.rows_of("order"), customers._cache.rows_of("order")
        assert kept[0] is not None
        assert kept[1] is not None
        assert touched
        assert all(kept[0][order_id] is kept[1][order_id] for order_id in touched)
        check_answers([details, customers], log, only=True)


def _order_of(record: RecordedEvent) -> str:
    return str(getattr(record.event, "order_id"))  # noqa: B009 - any order event has one


def test_a_failing_batch_changes_neither_rows_nor_checkpoint(data: Path, log: OrderLog) -> None:
    poison = msgspec.structs.replace(
        log.records[0],
        position=len(log.records) + 1,
        event=OrderShipped(order_id="never-created", shipped_at=EPOCH),
    )
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            view.apply(log.records[:60], 60)
            with pytest.raises(ValueError, match="never-created"):
                view.apply([*log.records[60:], poison], poison.position)
            assert view.position() == 60
        check_answers(views, log.upto(60))
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            assert view.position() == 60
        check_answers(views, log.upto(60))


def test_an_adopted_shadow_is_still_live_after_a_reopen(data: Path, log: OrderLog) -> None:
    with open_store(data) as store:
        for view in _lmdb_views(store):
            view.apply(log.records[:20], 20)
            shadow = view.new_shadow()
            shadow.apply(log.records, len(log.records))
            view.adopt(shadow)
            assert store.checkpoint(f"{view.name}:shadow") == 0
    with open_store(data) as store:
        views = _lmdb_views(store)
        assert all(view.position() == len(log.records) for view in views)
        check_answers(views, log)


def test_a_shadow_left_by_a_crash_is_ignored_then_emptied(data: Path, log: OrderLog) -> None:
    with open_store(data) as store:
        for view in _lmdb_views(store):
            view.apply(log.records[:30], 30)
            view.new_shadow().apply(log.records, len(log.records))  # never adopted
    with open_store(data) as store:
        views = _lmdb_views(store)
        check_answers(views, log.upto(30))
        for view in views:
            shadow = view.new_shadow()
            assert shadow.position() == 0
            shadow.apply(log.records[:10], 10)
            view.adopt(shadow)
        check_answers(views, log.upto(10))


class _DetailsV1(OrderDetailsModel):
    version = 1  # the rows' shape before order lines kept their price as text


class _CustomersV4(CustomerOrdersModel):
    version = 4


def test_rows_of_another_model_version_are_dropped_and_replayed_from_zero(
    data: Path, log: OrderLog
) -> None:
    with open_store(data) as store:
        # Version 1 never recorded itself: a directory made before versions were recorded.
        LmdbView(_DetailsV1(), store).apply(log.records, len(log.records))
        ahead = LmdbView(_CustomersV4(), store)
        ahead.apply(log.records, len(log.records))
    with open_store(data) as store:
        with capture_logs() as logs:
            views = [LmdbView(OrderDetailsModel(), store), LmdbView(CustomerOrdersModel(), store)]
        changed = [e for e in logs if e["event"] == "view_version_changed"]
        assert [(e["view"], e["stored_version"], e["version"]) for e in changed] == [
            ("order_details", 1, 3),
            ("customer_orders", 4, 3),
        ]
        assert all(e["dropped_position"] == len(log.records) for e in changed)
        for view in views:
            assert view.position() == 0
            assert store.checkpoint(view.name) == 0
        check_answers(views, OrderLog(), only=True)  # nothing of the old rows is read
        for view in views:
            view.apply(log.records, len(log.records))
        check_answers(views, log, only=True)
    with open_store(data) as store, capture_logs() as logs:
        views = [LmdbView(OrderDetailsModel(), store), LmdbView(CustomerOrdersModel(), store)]
        assert not [e for e in logs if e["event"] == "view_version_changed"]
        assert all(view.position() == len(log.records) for view in views)  # kept this time


def test_uuid_keyed_rows_are_stored_packed_and_answer_like_the_reference(data: Path) -> None:
    log = random_log(seed=12, commands=150, uuid_ids=True)
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            view.apply(log.records, len(log.records))
        check_answers(views, log)
        details = store.open_db("view:order_details:0")
        keys = store.read(lambda txn: list(txn.cursor(db=details).iternext(values=False)))
        # b"torder\0" + b"\0" + the id's 16 bytes, not its 36 characters
        assert keys
        assert all(len(key) == 7 + 17 for key in keys)
    with open_store(data) as store:
        check_answers(_lmdb_views(store), log)  # read back after a reopen


def test_rows_of_the_older_key_layout_are_dropped_and_replayed(data: Path) -> None:
    log = random_log(seed=13, commands=80, uuid_ids=True)
    with open_store(data) as store:
        LmdbView(OrderDetailsModel(), store).apply(log.records, len(log.records))
        versions = store.open_db(VERSIONS_DB)
        # What a build before packed keys recorded: the bare version, layout 1 implied.
        old = str(OrderDetailsModel.version).encode()
        store.write(lambda txn: txn.put(b"order_details", old, db=versions))
    with open_store(data) as store:
        reader = FollowedView(OrderDetailsModel(), store)
        assert reader.position() == 0  # after= waits rather than look keys up the wrong way
        with pytest.raises(InvalidView, match="key layout 1, this reads layout 2"):
            reader.query(GetOrderById(next(iter(log.states))))
        with capture_logs() as logs:
            view = LmdbView(OrderDetailsModel(), store)
        changed = [e for e in logs if e["event"] == "view_version_changed"]
        assert [(e["stored_key_layout"], e["key_layout"]) for e in changed] == [(1, 2)]
        assert view.position() == 0
        view.apply(log.records, len(log.records))
        check_answers([view, reader], log, only=True)


def test_a_damaged_version_record_drops_the_rows_and_replays_without_failing_the_open(
    data: Path, log: OrderLog
) -> None:
    with open_store(data) as store:
        LmdbView(OrderDetailsModel(), store).apply(log.records, len(log.records))
        versions = store.open_db(VERSIONS_DB)
        store.write(lambda txn: txn.put(b"order_details", b"\xffgarbage", db=versions))
    with open_store(data) as store:
        reader = FollowedView(OrderDetailsModel(), store)
        assert reader.position() == 0  # after= waits for the writer's replay
        with pytest.raises(InvalidView, match="cannot read"):
            reader.query(GetOrderById(next(iter(log.states))))
        with capture_logs() as logs:
            view = LmdbView(OrderDetailsModel(), store)
        changed = [e for e in logs if e["event"] == "view_version_changed"]
        assert [(e["stored_version"], e["dropped_position"]) for e in changed] == [
            (0, len(log.records))
        ]
        assert view.position() == 0
        check_answers([view], OrderLog(), only=True)  # nothing of the old rows is read
        view.apply(log.records, len(log.records))
        check_answers([view, reader], log, only=True)


def test_a_reader_waits_for_the_writer_to_replay_another_versions_rows(
    data: Path, log: OrderLog
) -> None:
    with open_store(data) as store:
        LmdbView(_DetailsV1(), store).apply(log.records, len(log.records))
        reader = FollowedView(OrderDetailsModel(), store)
        assert reader.position() == 0  # after= waits rather than read version 1's rows
        with pytest.raises(InvalidView, match="read-model version 1, this is version 3"):
            reader.query(GetOrderById("o-1"))
        writer = LmdbView(OrderDetailsModel(), store)
        writer.apply(log.records, len(log.records))
        assert reader.position() == len(log.records)
        check_answers([reader], log, only=True)


def test_clear_persists(data: Path, log: OrderLog) -> None:
    with open_store(data) as store:
        for view in _lmdb_views(store):
            view.apply(log.records, len(log.records))
            view.clear()
    with open_store(data) as store:
        views = _lmdb_views(store)
        assert all(view.position() == 0 for view in views)
        check_answers(views, OrderLog())


def test_ids_too_long_for_an_lmdb_key_still_work(data: Path) -> None:
    log = OrderLog()
    customer = "\U0001d518" * 200  # 800 UTF-8 bytes: over LMDB's 511-byte key limit
    product = "\U0001d51a" * 199 + "x"
    log.create("o-1", customer, (product, 2, "5"), legacy=True)
    log.create("o-2", customer[:-1] + "y", (product[:-1] + "z", 1, "5"), legacy=True)
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            view.apply(log.records, 2)
        check_answers(views, log)
        page = views[1].query(GetCustomerOrders(customer))
        assert [v.order_id for v in getattr(page, "items", [])] == ["o-1"]


def test_customers_whose_ids_extend_each_other_stay_apart(data: Path) -> None:
    log = OrderLog()
    for index, customer in enumerate(["a", "a\x00b", "a\x00", "ab", "a\x01"]):
        log.create(f"o-{index}", customer, ("p", 1, "1"), legacy=True)
    with open_store(data) as store:
        views = _lmdb_views(store)
        for view in views:
            view.apply(log.records, len(log.records))
        for customer in ["a", "a\x00b", "a\x00", "ab", "a\x01", "b", ""]:
            query = GetCustomerOrders(customer)
            assert views[1].query(query) == reference(log, query)
        for text in ["a\x00", "\x00b", "a"]:
            search = SearchOrders(query=text)
            assert views[2].query(search) == reference(log, search)


# ---------------------------------------------------------------- the factory


def test_the_factory_defaults_to_lmdb_for_details_and_customers(data: Path) -> None:
    with open_store(data) as store:
        views = order_views(store, skip_unknown=True)
        assert [(v.name, v.backend) for v in views] == list(DEFAULT_BACKENDS.items())
        assert [v.name for v in views] == [
            "order_details",
            "customer_orders",
            "order_search",
            "order_stats",
        ]
        assert all(v.skip_unknown for v in views)
        assert isinstance(views[0], LmdbView)
        assert isinstance(views[2], SearchView)  # indexed: no scan per search
        assert isinstance(views[3], MemoryView)


def test_the_factory_without_a_store_keeps_everything_in_memory() -> None:
    views = order_views(None)
    assert {v.backend for v in views} == {"memory"}
    assert not any(v.skip_unknown for v in views)


def test_the_factory_takes_backend_overrides_and_refuses_bad_ones(data: Path) -> None:
    with open_store(data) as store:
        views = order_views(store, backends={"order_search": "lmdb", "order_details": "memory"})
        assert [v.backend for v in views] == ["memory", "lmdb", "lmdb", "memory"]
        with pytest.raises(UnknownView):
            order_views(store, backends={"orders": "memory"})
        with pytest.raises(ValueError, match="disk"):
            order_views(store, backends={"order_stats": "disk"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="without a store"):
        order_views(None, backends={"order_stats": "lmdb"})


def test_query_routing_names_the_view_answering_each_query_type() -> None:
    views = {v.name: v for v in order_views(None)}
    assert set(QUERY_VIEW) == {GetOrderById, GetCustomerOrders, SearchOrders, GetOrderStats}
    for query_type, name in QUERY_VIEW.items():
        assert query_type in views[name].query_types


def test_lmdb_and_memory_views_give_identical_answers(data: Path, log: OrderLog) -> None:
    with open_store(data) as store:
        lmdb_views = _lmdb_views(store)
        memory_views: list[View] = [MemoryView(model()) for model in MODELS]
        for view in [*lmdb_views, *memory_views]:
            view.apply(log.records, len(log.records))
        for query in [*sample_queries(log), SearchOrders(min_total=Decimal("0.00"))]:
            lmdb_view = next(v for v in lmdb_views if isinstance(query, v.query_types))
            memory_view = next(v for v in memory_views if isinstance(query, v.query_types))
            assert msgspec.json.encode(lmdb_view.query(query)) == msgspec.json.encode(
                memory_view.query(query)
            )
        assert lmdb_views[3].query(GetOrderStats()) == reference(log, GetOrderStats())
