"""A shadow's rows kept decoded between write-outs: adopted, it is the view the log makes."""

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from views_kit import (
    Mutating,
    OrderLog,
    check_answers,
    open_store,
    poison,
    random_log,
    reference,
    sample_queries,
)

from store import RecordedEvent, ViewStore
from views import LmdbView
from views._lmdb_bulk import BulkRows
from views._lmdb_storage import LmdbStorage
from views._view import Storage
from views.orders import (
    CustomerOrdersModel,
    GetOrderById,
    OrderDetailsModel,
    OrderSearchModel,
    OrderStatsModel,
)

MODELS = (OrderDetailsModel, CustomerOrdersModel, OrderSearchModel, OrderStatsModel)


@pytest.fixture
def log() -> OrderLog:
    return random_log(seed=31, commands=180)


def _slot_answers_like(store: ViewStore, view: LmdbView, model: Any, log: OrderLog) -> None:
    """The rows on disk in ``view``'s slot, read without the view, answer like ``log``."""
    db = store.open_db(f"view:{view.name}:{view.slot}")
    queries = [query for query in sample_queries(log) if isinstance(query, view.query_types)]

    def answer(txn: lmdb.Transaction) -> list[object]:
        return [model.query(LmdbStorage(txn, db), query) for query in queries]

    assert store.read(answer) == [reference(log, query) for query in queries]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    limit=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 200), max_size=6),
)
def test_a_shadow_written_out_every_few_rows_adopts_as_the_log_makes_it(
    seed: int, limit: int, cuts: list[int]
) -> None:
    # Small limits write out and let rows go many times per replay: the rows read back from
    # the slot, the tops that spare LMDB gets and the index entries must all stay right.
    log = random_log(seed=seed, commands=120)
    records = log.records
    bounds = sorted({0, len(records), *(cut for cut in cuts if cut < len(records))})
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp)) as store:
        for model in MODELS:
            view = LmdbView(model(), store, bulk_rows=limit)
            view.apply(records[:7], 7)  # the live rows the shadow replaces
            shadow = view.new_shadow()
            for start, stop in itertools.pairwise(bounds):
                shadow.apply(records[start:stop], stop)
            view.adopt(shadow)
            assert view.position() == len(records)
            check_answers([view], log, only=True)


def test_a_shadow_writes_nothing_until_it_is_full_or_adopted(log: OrderLog, tmp_path: Path) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        for model in MODELS:
            view = LmdbView(model(), store)
            shadow = view.new_shadow()
            assert isinstance(shadow, LmdbView)
            shadow.apply(records, len(records))
            assert shadow.position() == len(records)
            assert store.checkpoint(shadow.checkpoint_key) == 0
            slot = store.open_db(f"view:{view.name}:{shadow.slot}")

            def entries(txn: lmdb.Transaction, db: Any = slot) -> int:
                return int(txn.stat(db)["entries"])

            assert store.read(entries) == 0
            view.adopt(shadow)
            check_answers([view], log, only=True)


def test_each_write_out_leaves_a_consistent_prefix_in_the_slot(
    log: OrderLog, tmp_path: Path
) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        for model_type in MODELS:
            model = model_type()
            view = LmdbView(model, store, bulk_rows=3)
            shadow = view.new_shadow()
            assert isinstance(shadow, LmdbView)
            moves = set()
            for stop in range(10, len(records) + 1, 10):
                shadow.apply(records[stop - 10 : stop], stop)
                written = store.checkpoint(shadow.checkpoint_key)
                moves.add(written)
                # Whatever a crash would find on disk is the log's prefix up to the checkpoint.
                _slot_answers_like(store, shadow, model, log.upto(written))
            assert len(moves) > 3  # it did write out, many times
            view.adopt(shadow)
            check_answers([view], log, only=True)


class _FailsOnce:
    """A read model that raises the first time it meets one position (before writing)."""

    def __init__(self, model: Any, position: int) -> None:
        self._model = model
        self._position = position
        self.failed = False
        self.name, self.tags, self.query_types = model.name, model.tags, model.query_types
        self.version = model.version

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        if record.position == self._position and not self.failed:
            self.failed = True
            raise ValueError("injected failure")
        self._model.apply(storage, record)

    def query(self, storage: Storage, query: object) -> object:
        return self._model.query(storage, query)


@pytest.mark.parametrize("model_type", MODELS)
def test_an_event_that_raises_stops_a_shadow_after_the_last_event_applied(
    model_type: Callable[[], Any], log: OrderLog, tmp_path: Path
) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        failing = _FailsOnce(model_type(), position=57)
        view = LmdbView(failing, store, bulk_rows=4)
        shadow = view.new_shadow()
        with pytest.raises(ValueError, match="injected"):
            shadow.apply(records[:100], 100)
        assert shadow.position() == 56
        # The projector goes on from there: nothing of 1-56 is applied twice (a doubled item
        # would change totals), nothing of 57 remains from the failed try.
        shadow.apply(records[56:], len(records))
        view.adopt(shadow)
        check_answers([view], log, only=True)


def test_reapplying_an_event_to_a_shadow_keeps_its_position(log: OrderLog, tmp_path: Path) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        shadow = view.new_shadow()
        shadow.apply(records[:40], 40)
        shadow.apply([], 60)  # 41-60 skipped, as parked events are
        for record in records[40:60]:
            shadow.reapply(record)  # a parked event's retry
        assert shadow.position() == 60
        shadow.apply(records[60:], len(records))
        view.adopt(shadow)
        check_answers([view], log, only=True)


def test_a_failed_write_out_keeps_the_rows_to_write_again(
    log: OrderLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        view = LmdbView(CustomerOrdersModel(), store, bulk_rows=2)
        shadow = view.new_shadow()
        shadow.apply(records[:30], 30)
        real = store.write

        def failing(fn: Callable[[lmdb.Transaction], Any]) -> Any:
            del fn  # never run: the write fails before its transaction
            raise OSError("injected write failure")

        monkeypatch.setattr(store, "write", failing)
        with pytest.raises(OSError, match="injected"):
            shadow.apply(records[30:60], 60)  # applied, then its write-out fails
        monkeypatch.setattr(store, "write", real)
        assert shadow.position() == 60
        shadow.apply(records[60:], len(records))
        view.adopt(shadow)
        check_answers([view], log, only=True)


def test_a_row_changed_in_place_by_a_failing_event_is_not_kept_by_a_shadow(
    log: OrderLog, tmp_path: Path
) -> None:
    # Rows of a mutable type stay encoded in the buffer: the failed event's in-place change
    # was made to a decoded copy, as it would have been to a row read from LMDB.
    with open_store(tmp_path / "v") as store:
        view = LmdbView(Mutating(), store)
        shadow = view.new_shadow()
        shadow.apply(log.records[:10], 10)
        with pytest.raises(ValueError, match="poison"):
            shadow.apply([poison(log)], len(log.records) + 1)
        shadow.apply(log.records[10:20], 20)
        view.adopt(shadow)
        assert view.query("all") == [record.position for record in log.records[:20]]


def test_the_adopting_view_keeps_the_shadows_rows_decoded(
    log: OrderLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderDetailsModel(), store)
        view.apply(records[:20], 20)
        shadow = view.new_shadow()
        shadow.apply(records, len(records))
        view.adopt(shadow)
        reads: list[object] = []
        real = store.read

        def counted(fn: Callable[[lmdb.Transaction], Any]) -> Any:
            reads.append(fn)
            return real(fn)

        monkeypatch.setattr(store, "read", counted)
        for order_id in log.states:
            query = GetOrderById(order_id)
            assert view.query(query) == reference(log, query)
        assert reads == []  # every row came from the rows the shadow had decoded
        assert view.query(GetOrderById("never-created")) is None
        monkeypatch.undo()
        check_answers([view], log, only=True)


def test_a_cleared_shadow_starts_again_from_nothing(log: OrderLog, tmp_path: Path) -> None:
    records = log.records
    with open_store(tmp_path / "v") as store:
        view = LmdbView(OrderStatsModel(), store, bulk_rows=5)
        shadow = view.new_shadow()
        shadow.apply(records[:90], 90)
        shadow.clear()
        assert shadow.position() == 0
        shadow.apply(records, len(records))
        view.adopt(shadow)
        check_answers([view], log, only=True)


def test_bulk_rows_apply_records_one_by_one_and_write_each_row_once(tmp_path: Path) -> None:
    log = random_log(seed=5, commands=30)
    with open_store(tmp_path / "v") as store:
        db = store.open_db("view:order_details:0")
        bulk = BulkRows(store, db, "order_details:shadow", OrderDetailsModel().apply, limit=1000)
        bulk.run(log.records, len(log.records))  # fewer orders than the limit: all kept
        assert bulk.position == len(log.records)
        assert store.checkpoint("order_details:shadow") == 0
        assert len(bulk.pending()) == len(log.created)  # one encoded row per order, each once
        bulk.write_out()
        assert bulk.pending() == {}
        assert store.checkpoint("order_details:shadow") == len(log.records)
