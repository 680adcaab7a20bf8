"""SearchView: answers equal the reference and the generic view's; apply, snapshots, threads."""

import itertools
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from views_kit import SORTS, STATUSES, OrderLog, random_log, ref_search, sample_queries

from domain.errors import EngineClosed, InvalidQuery
from domain.orders import AddOrderItem, OrderItemAdded, RemoveOrderItem
from store import RecordedEvent
from views import MemoryView
from views import _search as search_view
from views import _search_index as search_index
from views import _search_owners as search_owners
from views import _search_payload as search_payload
from views import _search_texts as search_texts
from views._order_models import OrderSearchModel
from views._search import SearchView
from views._search_owners import owner_sets
from views._search_postings import encode_grams
from views._snapshot_file import encode_snapshot
from views.orders import GetOrderStats, OrderView, Page, SearchOrders


def _applied(log: OrderLog, batch: int = 7, view: SearchView | None = None) -> SearchView:
    view = view or SearchView()
    records = log.records
    for first in range(0, len(records), batch):
        chunk = records[first : first + batch]
        view.apply(chunk, chunk[-1].position)
    return view


def _memory(log: OrderLog) -> MemoryView:
    view = MemoryView(OrderSearchModel())
    view.apply(log.records, len(log.records))
    return view


@st.composite
def _queries(draw: st.DrawFn, log: OrderLog) -> SearchOrders:
    ids = [s.order_id for s in log.states.values()]
    ids += [s.customer_id for s in log.states.values()]
    ids += [item.product_id for s in log.states.values() for item in s.items]
    source = draw(st.sampled_from(ids)) if ids else ""
    start = draw(st.integers(0, len(source)))
    end = draw(st.integers(start, min(len(source), start + draw(st.sampled_from([1, 2, 3, 9])))))
    needle = source[start:end]
    needle = draw(
        st.sampled_from([needle, needle.upper(), needle.swapcase(), "", needle + "\x00", "zz"])
    )
    bound = (
        st.none()
        | st.decimals(0, 200, places=2, allow_nan=False)
        | st.integers(0, 150).map(Decimal)
    )
    return SearchOrders(
        query=needle,
        status=draw(st.sampled_from([None, *STATUSES])),
        min_total=draw(bound),
        max_total=draw(bound),
        sort_by=draw(st.sampled_from(SORTS)),
        sort_order=draw(st.sampled_from(["asc", "desc"])),
        page=draw(st.integers(1, 4)),
        page_size=draw(st.sampled_from([1, 2, 5, 20, 1000])),
    )


@pytest.fixture(params=["default", "walk-heavy"])
def _tuning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small logs never reach the thresholds of the full re-sort and the scan fallback: lower
    # them so that both paths of every choice are compared too.
    if request.param == "walk-heavy":
        monkeypatch.setattr(search_index, "_FULL_SYNC_MIN", 2)
        monkeypatch.setattr(search_index, "_SCAN_FACTOR", 1)
        monkeypatch.setattr(search_index, "_WALK_BUDGET", 1)
        monkeypatch.setattr(search_owners, "LIST_MAX", 2)  # owners move from lists to sets


@pytest.mark.usefixtures("_tuning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(0, 250), data=st.data())
def test_search_view_answers_as_the_reference_and_the_generic_view(
    seed: int, size: int, data: st.DataObject
) -> None:
    log = random_log(seed, size, case_twins=data.draw(st.booleans()))
    batch = data.draw(st.integers(1, 40))
    view, memory = _applied(log, batch), _memory(log)
    queries = [q for q in sample_queries(log) if isinstance(q, SearchOrders)]
    queries += [data.draw(_queries(log)) for _ in range(12)]
    for query in queries:
        expected = ref_search(log, query)
        assert view.query(query) == expected, query
        assert memory.query(query) == expected, query


def test_redelivered_events_are_ignored_and_up_to_may_pass_the_last_event() -> None:
    log = random_log(1, 120)
    view = _applied(log)
    before = view.query(SearchOrders(page_size=1000))
    view.apply(log.records[:50], 500)
    assert view.position() == 500
    assert view.query(SearchOrders(page_size=1000)) == before


def test_up_to_below_the_last_event_is_refused() -> None:
    log = random_log(2, 30)
    with pytest.raises(ValueError, match="up_to"):
        SearchView().apply(log.records, 3)


def test_a_raising_event_leaves_nothing_of_itself_and_keeps_what_came_before() -> None:
    log = random_log(3, 80)
    view = _applied(log)
    good = log.records[-1].position
    order_id = next(o for o, s in log.states.items() if s.status == "pending")
    poison = RecordedEvent(
        position=good + 2,
        stream_id="nope",
        stream_type="order",
        version=1,
        tag="OrderItemAdded",
        schema_version=1,
        timestamp=0,
        command_id="",
        event=OrderItemAdded(order_id="nope", product_id="x", quantity=1, price=Decimal(1)),
    )
    item = log.states[order_id].items[0]
    fine = log.do(
        AddOrderItem(order_id=order_id, product_id=item.product_id, quantity=1, price=item.price)
    )
    tail = msgspec.structs.replace(fine, position=good + 3)
    first = msgspec.structs.replace(fine, position=good + 1)
    with pytest.raises(ValueError, match="does not exist"):
        view.apply([first, poison, tail], good + 3)
    assert view.position() == good + 1
    assert view.query(SearchOrders(query="nope")).total == 0
    with pytest.raises(ValueError, match="does not exist"):
        view.reapply(poison)
    assert view.position() == good + 1


def test_snapshot_and_restore_give_the_same_answers() -> None:
    log = random_log(4, 200)
    view = _applied(log)
    position, data = view.snapshot()
    restored = SearchView()
    assert restored.restore(data) == position == view.position()
    for query in [SearchOrders(page_size=1000), SearchOrders(query="sku-0", sort_by="item_count")]:
        assert restored.query(query) == view.query(query)
    # The orderings are rebuilt at restore, per status and field: each must match the live one.
    for status in (None, *STATUSES):
        for sort_by, sort_order in itertools.product(SORTS, ("asc", "desc")):
            query = SearchOrders(
                status=status, sort_by=sort_by, sort_order=sort_order, page_size=1000
            )
            assert restored.query(query) == view.query(query) == ref_search(log, query)
    assert restored._index.export()[0] == view._index.export()[0]  # Decimal, datetime round-trip
    more = random_log(4, 260)
    restored.apply(more.records[position:], len(more.records))
    assert restored.query(SearchOrders(page_size=1000)) == ref_search(
        more, SearchOrders(page_size=1000)
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(1, 200), data=st.data())
def test_a_restored_view_answers_needles_before_and_after_it_builds_their_owners(
    seed: int, size: int, data: st.DataObject
) -> None:
    # A restore leaves the owners of each text unbuilt: needle searches scan until enough of
    # them came, then the owners are built from the rows as they are by then (events folded
    # meanwhile included). Every answer on the way must equal the reference.
    log = random_log(seed, size)
    cut = data.draw(st.integers(0, len(log.records)))
    before = _applied(log)
    _, data_bytes = SearchView().snapshot() if cut == 0 else _snapshot_at(log, cut)
    restored = SearchView()
    step = max(1, (len(log.records) - cut) // 3)
    position, needles = cut, 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_view, "_OWNERS_IN_BACKGROUND", False)  # the query path builds
        patch.setattr(search_index, "_OWNERS_AFTER_SCANS", 3)  # build mid-way in small examples
        assert restored.restore(data_bytes) is not None
        assert restored._index._ids.owners is None  # the lazy state under test
        while True:
            for _ in range(data.draw(st.integers(1, 8))):
                query = data.draw(_queries(log))
                needles += bool(query.query.casefold())
                assert restored.query(query) == ref_search(_prefix(log, position), query), query
            if position >= len(log.records):
                break
            chunk = log.records[position : position + step]
            restored.apply(chunk, chunk[-1].position)
            position = chunk[-1].position
    built = restored._index._ids.owners is not None
    assert built == (needles >= 3)
    assert restored.query(SearchOrders(page_size=1000)) == before.query(
        SearchOrders(page_size=1000)
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 200), data=st.data())
def test_owners_built_off_the_lock_are_reconciled_with_the_events_folded_meanwhile(
    seed: int, size: int, data: st.DataObject
) -> None:
    log = random_log(seed, size)
    assume(log.records)
    cut = data.draw(st.integers(1, len(log.records)))
    middle = data.draw(st.integers(cut, len(log.records)))
    _, raw = _snapshot_at(log, cut)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_view, "_OWNERS_IN_BACKGROUND", False)
        restored = SearchView()
        assert restored.restore(raw) is not None
    index = restored._index  # driving the three steps by hand
    copied, text_ids, texts = index.begin_owners()
    for record in log.records[cut:middle]:  # folded while the owners are being built
        index.fold(record)
    owners = search_texts.build_owners(copied, text_ids, texts)
    index.install_owners(owners, copied)
    expected = search_texts.build_owners(list(index.rows.items()), text_ids, len(text_ids))
    assert index._ids.owners is not None
    assert owner_sets(index._ids.owners) == owner_sets(expected)
    for record in log.records[middle:]:  # and it stays right as more events come
        index.fold(record)
    index.sync()
    for query in [data.draw(_queries(log)) for _ in range(10)]:
        assert restored.query(query) == ref_search(log, query), query


def test_searches_by_id_part_after_a_restore_build_the_owners_in_the_background() -> None:
    log = random_log(9, 150)
    _, raw = _snapshot_at(log, len(log.records))
    restored = SearchView()
    assert restored.restore(raw) is not None
    assert restored._index.owners_pending  # not at restore: it would slow the engine's open
    first = SearchOrders(query=log.records[0].stream_id[:4])
    for _ in range(search_view._SCANS_BEFORE_BUILD):
        assert restored._index.owners_pending
        assert restored.query(first) == ref_search(log, first)  # a scan; the last starts a build

    def pending() -> bool:
        return restored._index.owners_pending

    deadline = time.monotonic() + 10
    while pending():
        assert time.monotonic() < deadline, "the owners were never built"
        time.sleep(0.005)  # polling a condition with a deadline
    for query in sample_queries(log):
        if isinstance(query, SearchOrders):
            assert restored.query(query) == ref_search(log, query), query


def _prefix(log: OrderLog, position: int) -> OrderLog:
    """The log as it was at ``position`` (its first ``position`` records replayed)."""
    partial = OrderLog()
    for record in log.records[:position]:
        partial._record(record.stream_id, record.event, record.command_id)
    return partial


def _snapshot_at(log: OrderLog, cut: int) -> tuple[int, bytes]:
    view = SearchView()
    view.apply(log.records[:cut], log.records[cut - 1].position)
    return view.snapshot()


def test_restore_refuses_a_view_that_is_not_empty_and_discards_foreign_snapshots() -> None:
    log = random_log(5, 40)
    view = _applied(log)
    _, data = view.snapshot()
    with pytest.raises(ValueError, match="empty"):
        view.restore(data)
    other = SearchView("another_search")
    assert other.restore(data) is None
    assert other.position() == 0
    assert SearchView().restore(b"garbage") is None
    # 2: order lines keep their price as text; 3: flat rows; 4: trigram postings only; 5: each
    # distinct line stored once
    assert view.model_version == 5
    assert other.restore(encode_snapshot("another_search", 2, 1, b"")) is None  # too old


def test_a_shadow_is_independent_and_adopting_it_swaps_the_state() -> None:
    log = random_log(6, 120)
    view = _applied(log)
    shadow = view.new_shadow()
    assert shadow.position() == 0
    half = log.upto(60)
    _applied(half, view=shadow)
    view.adopt(shadow)
    assert view.position() == 60
    assert view.query(SearchOrders(page_size=1000)) == ref_search(
        half, SearchOrders(page_size=1000)
    )
    with pytest.raises(EngineClosed):
        shadow.position()
    with pytest.raises(TypeError):
        view.adopt(view)


def test_clear_empties_and_a_closed_view_raises_engine_closed() -> None:
    view = _applied(random_log(7, 60))
    view.clear()
    assert view.position() == 0
    assert view.query(SearchOrders()).total == 0
    view.close()
    view.close()
    for call in (view.position, lambda: view.query(SearchOrders()), view.snapshot):
        with pytest.raises(EngineClosed):
            call()
    with pytest.raises(EngineClosed):
        view.apply([], 1)


def test_bad_queries_raise_invalid_query() -> None:
    view = SearchView()
    for query in (SearchOrders(page=0), SearchOrders(sort_by="price"), GetOrderStats()):
        with pytest.raises(InvalidQuery):
            view.query(query)


@pytest.fixture
def _frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("_frequent_thread_switches")
def test_queries_during_apply_never_see_a_torn_state() -> None:
    log = random_log(8, 600, customers=3, products=6)
    view = SearchView()
    errors: list[BaseException] = []
    done = threading.Event()
    deadline = time.monotonic() + 20

    def read() -> None:
        seen = 0
        try:
            while not done.is_set() and time.monotonic() < deadline:
                page = view.query(SearchOrders(query="sku", page_size=1000))
                assert page.total == len(page.items)
                everything = view.query(SearchOrders(page_size=1000))
                # Totals and counts equal their lines: no row is seen half-folded.
                for item in everything.items:
                    assert item.item_count >= 1
                assert everything.total == len(everything.items) >= seen
                seen = everything.total  # orders are never deleted: counts only grow
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    _applied(log, batch=3, view=view)
    done.set()
    for reader in readers:
        reader.join(timeout=30)
    assert not errors, errors[0]
    assert view.query(SearchOrders(page_size=1000)) == ref_search(log, SearchOrders(page_size=1000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.integers(1, 200), data=st.data())
def test_short_needles_are_found_by_a_scan_kept_and_extended_as_texts_arrive(
    seed: int, size: int, data: st.DataObject
) -> None:
    # Only trigrams are indexed: a needle of 1 or 2 characters scans the texts once, keeps what
    # it found, and later scans only the texts numbered since. Searches between applies, with a
    # cache of two needles (so some are dropped and scanned again), must equal the reference.
    log = random_log(seed, size, uuid_ids=data.draw(st.booleans()))
    view = SearchView()
    position = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_texts, "SHORT_NEEDLES", 2)
        while True:
            texts = view._index._ids.texts or ["ab"]
            for _ in range(data.draw(st.integers(1, 6))):
                text = data.draw(st.sampled_from(texts))
                start = data.draw(st.integers(0, max(0, len(text) - 1)))
                needle = text[start : start + data.draw(st.integers(1, 2))] or "q"
                needle = data.draw(st.sampled_from([needle, needle.upper(), "#"]))
                query = SearchOrders(query=needle, page_size=1000)
                assert view.query(query) == ref_search(_prefix(log, position), query), query
                assert len(view._index._ids.short) <= 2
            if position >= len(log.records):
                break
            chunk = log.records[position : position + data.draw(st.integers(1, 60))]
            view.apply(chunk, chunk[-1].position)
            position = chunk[-1].position
    assert all(len(gram) == search_texts.GRAM for gram in view._index._ids.grams)


def test_a_version_3_snapshot_is_read_without_its_short_postings() -> None:
    # Version 3 kept postings of 1, 2 and 3 characters: an engine upgraded in place restores
    # it (no replay) and drops the shorter ones, which a version 4 view never consults.
    log = random_log(11, 150, uuid_ids=True)
    view = _applied(log)
    position = view.position()
    rows, texts, _ = view._index.export()
    grams: dict[str, array[int]] = {}
    for number, text in enumerate(texts):  # the version 3 index, as it was built
        for size in (1, 2, 3):
            for gram in sorted({text[i : i + size] for i in range(len(text) - size + 1)}):
                grams.setdefault(gram, array("I")).append(number)
    old = msgspec.msgpack.encode([rows, texts, encode_grams(grams, len(texts))])
    restored = SearchView()
    assert restored.restore(encode_snapshot(view.name, 3, position, old)) == position
    assert all(len(gram) == search_texts.GRAM for gram in restored._index._ids.grams)
    assert restored._index._ids.grams == view._index._ids.grams
    for needle in ("a", "-", "4f", texts[0][:2], texts[0][2:7], "zz"):
        query = SearchOrders(query=needle, page_size=1000)
        assert restored.query(query) == ref_search(log, query), needle


@pytest.mark.parametrize("list_max", [2, 1 << 15])
def test_an_id_that_casefolds_like_another_of_its_order_owns_the_text_once(
    list_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Order A gains "SKU-1" beside "sku-1": one text, owned once. Had A been recorded twice
    # (once per id), removing both lines would leave one entry behind, and a search for "sku-1"
    # would still find A. B keeps the text shared (a list of owners, or a set past list_max).
    monkeypatch.setattr(search_owners, "LIST_MAX", list_max)
    log = OrderLog()
    log.create("A", "c-1", ("sku-1", 1, "2.00"))
    log.create("B", "c-2", ("sku-1", 1, "2.00"), ("sku-9", 1, "1.00"))
    log.create("C", "c-3", ("sku-1", 1, "2.00"))
    log.do(AddOrderItem(order_id="A", product_id="SKU-1", quantity=1, price=Decimal(3)))
    view = _applied(log, 1)
    assert _ids(view.query(SearchOrders(query="sku-1"))) == {"A", "B", "C"}
    log.do(RemoveOrderItem(order_id="A", product_id="sku-1"))
    log.do(AddOrderItem(order_id="A", product_id="sku-9", quantity=1, price=Decimal(1)))
    log.do(RemoveOrderItem(order_id="A", product_id="SKU-1"))
    view = _applied(log, 1)
    for query in ("sku-1", "SKU-1", "ku-1"):
        assert _ids(view.query(SearchOrders(query=query))) == {"B", "C"}, query
        assert view.query(SearchOrders(query=query)) == ref_search(log, SearchOrders(query=query))
    assert _ids(view.query(SearchOrders(query="sku-9"))) == {"A", "B"}


def _ids(page: Page[OrderView]) -> set[str]:
    return {item.order_id for item in page.items}


def test_a_version_5_snapshot_shares_each_distinct_line_and_a_version_4_one_still_restores() -> (
    None
):
    log = random_log(12, 300, uuid_ids=True)
    view = _applied(log)
    position, data = view.snapshot()
    restored = SearchView()
    assert restored.restore(data) == position
    rows = list(restored._index.rows.values())
    lines = [line for row in rows for line in row.lines]
    assert len({id(line) for line in lines}) == len(set(lines))  # one object per distinct line
    assert restored._index.rows == view._index.rows
    # Version 4: whole rows (an engine upgraded in place restores it; no replay).
    whole, texts, grams = view._index.export()
    old = msgspec.msgpack.encode([whole, texts, encode_grams(grams, len(texts))])
    older = SearchView()
    assert older.restore(encode_snapshot(view.name, 4, position, old)) == position
    assert older._index.rows == view._index.rows
    for query in [q for q in sample_queries(log) if isinstance(q, SearchOrders)]:
        assert restored.query(query) == older.query(query) == ref_search(log, query), query


def test_a_version_5_snapshot_naming_a_line_it_lacks_is_discarded() -> None:
    view = _applied(random_log(13, 40))
    position = view.position()
    rows, texts, grams = view._index.export()
    parts = search_payload.encode_payload(rows, texts, grams)
    numbered = msgspec.msgpack.decode(b"".join(parts))
    assert len(numbered[1]) > 1
    short = [numbered[0], numbered[1][:1], *numbered[2:]]  # the other numbers point past it
    at = search_payload._LINES_AT
    negative = [[[*row[:at], [-1], *row[at + 1 :]] for row in numbered[0]], *numbered[1:]]
    for payload in (short, negative):
        broken = encode_snapshot(view.name, 5, position, msgspec.msgpack.encode(payload))
        fresh = SearchView()
        assert fresh.restore(broken) is None
        assert fresh.position() == 0


def test_the_id_texts_hold_no_second_copy_of_an_order_or_customer_id() -> None:
    # Memory: a text equal to its order's id (or customer id) string is that very string.
    log = random_log(14, 120, uuid_ids=True)  # lowercase uuids: each casefolds to itself
    view = _applied(log)
    index = view._index
    ids = index._ids
    for row in index.rows.values():
        assert ids.texts[ids.numbers[row.order_id]] is row.order_id
    restored = SearchView()
    restored.restore(view.snapshot()[1])
    again = restored._index
    assert again.rows == index.rows
    for row in again.rows.values():  # a restore registers them as the rows' own strings too
        assert again._ids.texts[again._ids.numbers[row.order_id]] is row.order_id
    customers = {row.customer_id for row in index.rows.values()}
    shared = [text for text in ids.texts if text in customers]
    assert shared
    assert all(any(text is row.customer_id for row in index.rows.values()) for text in shared)
