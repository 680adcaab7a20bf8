"""Memory views snapshot themselves: restoring a snapshot and applying the tail equals a replay."""

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from views_kit import OrderLog, encoded, random_log, reference, sample_queries

import views._memory
from domain.errors import EngineClosed
from store import RecordedEvent
from views._chunked import Parts
from views._memory import MemoryView
from views._memory_codec import SnapshotRowsError, encode_state
from views._snapshot_file import (
    encode_snapshot,
    read_snapshot_file,
    snapshot_path,
    write_snapshot_file,
)
from views._view import ReadModel, Storage
from views.orders import (
    CustomerOrdersModel,
    OrderDetailsModel,
    OrderSearchModel,
    OrderStatsModel,
)

MODELS: dict[str, Callable[[], ReadModel]] = {
    "details": OrderDetailsModel,
    "customer": CustomerOrdersModel,
    "search": OrderSearchModel,
    "stats": OrderStatsModel,
}
LOG = random_log(seed=7, commands=160)
RECORDS = LOG.records
HEAD = len(RECORDS)


def _queries(model: ReadModel, log: OrderLog = LOG) -> list[object]:
    """The sample queries ``model`` answers."""
    return [q for q in sample_queries(log) if isinstance(q, model.query_types)]


def _answers(view: MemoryView, queries: list[object]) -> list[bytes]:
    return [encoded(view.query(q)) for q in queries]


def _fed(model: ReadModel, records: list[RecordedEvent], up_to: int) -> MemoryView:
    view = MemoryView(model)
    view.apply(records, up_to)
    return view


def _tables(view: MemoryView, like: MemoryView) -> dict[str, bytes]:
    """Every table's rows in a byte form that shows Decimal exponents and time zones.

    Restored tables not used yet are decoded with the row types ``like`` asked for.
    """
    state = view._state
    names = set(state._tables) | set(state._pending)
    types = {name: table.row_type for name, table in like._state._tables.items()}
    return {name: encoded(_decoded(state.table(name, types[name]))) for name in names}


def _decoded(table: Any) -> dict[str, Any]:
    """A table's rows, every one decoded (restored rows stay encoded until read)."""
    list(table.values())  # a scan decodes the rest
    rows: dict[str, Any] = table.rows
    return rows


def _is_empty_at_zero(view: MemoryView) -> bool:
    return view.position() == 0 and view._state.is_empty()


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> ReadModel:
    return MODELS[request.param]()


# ---------------------------------------------------------------- round trips


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    commands=st.integers(0, 150),
    cut=st.floats(0, 1),
    query_first=st.booleans(),
)
def test_restoring_a_snapshot_and_applying_the_tail_answers_like_a_full_replay(
    model: ReadModel, seed: int, commands: int, cut: float, query_first: bool
) -> None:
    log = random_log(seed, commands)
    records, head = log.records, len(log.records)
    k = int(cut * head)
    queries = _queries(model, log)
    full = _fed(model, records, head)
    prefix = _fed(model, records[:k], k)

    position, data = prefix.snapshot()
    restored = MemoryView(model)
    assert restored.restore(data) == position == k
    assert restored.position() == k
    if query_first:  # restored tables decoded by a query instead of by the next apply
        prefix_queries = _queries(model, log.upto(k))
        assert _answers(restored, prefix_queries) == _answers(prefix, prefix_queries)
    restored.apply(records[k:], head)

    assert restored.position() == head
    assert _answers(restored, queries) == _answers(full, queries)
    assert _answers(full, queries) == [encoded(reference(log, q)) for q in queries]
    assert _tables(restored, full) == _tables(full, full)
    assert restored._state.copy()[2] == full._state.copy()[2]  # the indexes


def test_restored_rows_equal_the_originals_field_for_field(model: ReadModel) -> None:
    original = _fed(model, RECORDS, HEAD)
    restored = MemoryView(model)
    assert restored.restore(original.snapshot()[1]) == HEAD
    state, source = restored._state, original._state
    for name, table in source._tables.items():
        rows = _decoded(state.table(name, table.row_type))
        assert rows == table.rows
        assert list(rows) == list(table.rows)  # insertion order: search's tie-breaking input
        assert all(type(rows[key]) is type(row) for key, row in table.rows.items())


def test_a_restored_view_snapshots_to_the_same_bytes_before_anything_is_applied(
    model: ReadModel,
) -> None:
    _, data = _fed(model, RECORDS, HEAD).snapshot()
    restored = MemoryView(model)
    restored.restore(data)
    assert restored.snapshot() == (HEAD, data)  # untouched tables are written back raw
    restored.query(_queries(model)[0])  # decodes some tables
    assert restored.snapshot() == (HEAD, data)


def test_an_empty_view_snapshots_and_restores_at_position_0(model: ReadModel) -> None:
    position, data = MemoryView(model).snapshot()
    restored = MemoryView(model)
    assert (position, restored.restore(data)) == (0, 0)
    restored.apply(RECORDS, HEAD)
    assert _answers(restored, _queries(model)) == _answers(
        _fed(model, RECORDS, HEAD), _queries(model)
    )


def test_a_position_past_the_last_event_survives_the_round_trip(model: ReadModel) -> None:
    # The projector moves the position past events of other tags: the snapshot keeps it.
    view = _fed(model, RECORDS, HEAD + 50)
    restored = MemoryView(model)
    assert restored.restore(view.snapshot()[1]) == HEAD + 50


def test_a_shadow_snapshots_and_a_restored_shadow_is_adopted(model: ReadModel) -> None:
    live = MemoryView(model)
    shadow = live.new_shadow()
    shadow.apply(RECORDS, HEAD)
    _, data = shadow.snapshot()
    second = live.new_shadow()
    assert second.restore(data) == HEAD
    live.adopt(second)
    assert live.position() == HEAD
    assert _answers(live, _queries(model)) == _answers(shadow, _queries(model))


def test_snapshots_taken_while_events_are_applied_are_each_consistent(model: ReadModel) -> None:
    view = MemoryView(model)
    snapshots: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for record in RECORDS:
                view.apply([record], record.position)
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        snapshots.append(view.snapshot())
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors
    snapshots.append(view.snapshot())
    for position, data in snapshots[:: max(1, len(snapshots) // 25)] + snapshots[-1:]:
        restored = MemoryView(model)
        assert restored.restore(data) == position
        prefix = LOG.upto(position)
        queries = _queries(model, prefix)
        assert _answers(restored, queries) == [encoded(reference(prefix, q)) for q in queries]


def test_events_applied_while_a_snapshot_encodes_are_not_in_it(
    model: ReadModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Encoding runs outside the lock: apply the tail right in that window, deterministically.
    view = _fed(model, RECORDS[:60], 60)

    def encode_after_the_tail(*state: Any) -> Parts:
        view.apply(RECORDS[60:], HEAD)
        return encode_state(*state)

    monkeypatch.setattr(views._memory, "encode_state", encode_after_the_tail)
    position, data = view.snapshot()
    monkeypatch.undo()
    assert (position, view.position()) == (60, HEAD)
    restored = MemoryView(model)
    assert restored.restore(data) == 60
    prefix = LOG.upto(60)
    queries = _queries(model, prefix)
    assert _answers(restored, queries) == [encoded(reference(prefix, q)) for q in queries]


# ---------------------------------------------------------------- discarded snapshots


class _Versioned:
    """An order read model under another version (or name)."""

    def __init__(self, inner: ReadModel, version: object = 1, name: str | None = None) -> None:
        self.inner = inner
        self.version = version
        self.name = inner.name if name is None else name
        self.tags = inner.tags
        self.query_types = inner.query_types

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        self.inner.apply(storage, record)

    def query(self, storage: Storage, query: object) -> object:
        return self.inner.query(storage, query)


@pytest.fixture
def snapshot() -> bytes:
    return _fed(CustomerOrdersModel(), RECORDS, HEAD).snapshot()[1]


def _assert_discarded(view: MemoryView, data: bytes) -> None:
    with capture_logs() as logs:
        assert view.restore(data) is None
    assert _is_empty_at_zero(view)
    assert [e["event"] for e in logs] == ["view_snapshot_discarded"]
    # Nothing half-restored: a replay from 0 gives the right answers.
    view.apply(RECORDS, HEAD)
    queries = _queries(CustomerOrdersModel())
    assert _answers(view, queries) == [encoded(reference(LOG, q)) for q in queries]


def test_a_snapshot_of_another_model_version_is_discarded(snapshot: bytes) -> None:
    view = MemoryView(_Versioned(CustomerOrdersModel(), version=4))
    assert view.model_version == 4
    _assert_discarded(view, snapshot)


def test_a_snapshot_of_order_rows_version_1_is_discarded() -> None:
    # Version 1 kept an order's lines as OrderItem maps with Decimal prices: never misread.
    old = _fed(_Versioned(CustomerOrdersModel(), version=1), RECORDS, HEAD).snapshot()[1]
    _assert_discarded(MemoryView(CustomerOrdersModel()), old)


def test_a_snapshot_of_another_view_is_discarded(snapshot: bytes) -> None:
    _assert_discarded(MemoryView(_Versioned(CustomerOrdersModel(), name="elsewhere")), snapshot)


@pytest.mark.parametrize("keep", [0, 3, 9, 40, -1])
def test_a_truncated_snapshot_is_discarded(snapshot: bytes, keep: int) -> None:
    _assert_discarded(MemoryView(CustomerOrdersModel()), snapshot[:keep])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_a_snapshot_with_a_flipped_bit_is_discarded(where: float, bit: int) -> None:
    data = bytearray(_fed(CustomerOrdersModel(), RECORDS[:40], 40).snapshot()[1])
    data[int(where * len(data))] ^= 1 << bit
    view = MemoryView(CustomerOrdersModel())
    with capture_logs():
        assert view.restore(bytes(data)) is None
    assert _is_empty_at_zero(view)


def test_every_flipped_bit_of_the_header_is_discarded(snapshot: bytes) -> None:
    # The header's position once passed unchecked: restored at a wrong position, a view would
    # skip or re-apply events. The checksum covers the header's fields now.
    header_end = 8 + int.from_bytes(snapshot[4:8], "big")
    for offset in range(header_end):
        for bit in range(8):
            data = bytearray(snapshot)
            data[offset] ^= 1 << bit
            with capture_logs():
                assert MemoryView(CustomerOrdersModel()).restore(bytes(data)) is None


def test_a_well_framed_payload_that_is_not_a_state_is_discarded() -> None:
    view = MemoryView(CustomerOrdersModel())
    for payload in (b"", b"\xc1", msgspec.msgpack.encode({"tables": 1})):
        with capture_logs() as logs:
            assert view.restore(encode_snapshot(view.name, view.model_version, 12, payload)) is None
        assert [e["reason"].split(":")[0] for e in logs] == ["payload"]
        assert _is_empty_at_zero(view)


# ---------------------------------------------------------------- rows of a changed type


class _Tally(msgspec.Struct, frozen=True):
    count: int


class _Named(msgspec.Struct, frozen=True):
    label: str


class _Counting:
    """A tiny read model: counts events per stream into rows of ``row_type``."""

    name = "counting"
    tags: frozenset[str] | None = None
    query_types: tuple[type, ...] = (str,)

    def __init__(self, row_type: type[msgspec.Struct] = _Tally) -> None:
        self.row_type = row_type

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        table = storage.table("tally", _Tally)
        row = table.get(record.stream_id)
        table.put(record.stream_id, _Tally((row.count if row else 0) + 1))

    def query(self, storage: Storage, query: object) -> object:
        return storage.table("tally", self.row_type).get(str(query))


def test_rows_of_a_changed_type_raise_a_clear_error_at_first_use_and_after() -> None:
    _, data = _fed(_Counting(), RECORDS, HEAD).snapshot()
    view = MemoryView(_Counting(row_type=_Named))  # same version: the author forgot to bump it
    assert view.restore(data) == HEAD  # the frame is right: rows are typed only when asked for
    for _ in range(2):  # the table stays undecoded: it never looks empty
        with pytest.raises(SnapshotRowsError, match=r"'counting'.*'tally'.*version") as error:
            view.query(RECORDS[0].stream_id)
        assert (error.value.view, error.value.table) == ("counting", "tally")


def test_rows_of_the_right_type_answer_after_a_restore() -> None:
    _, data = _fed(_Counting(), RECORDS, HEAD).snapshot()
    view = MemoryView(_Counting())
    view.restore(data)
    expected = sum(r.stream_id == RECORDS[0].stream_id for r in RECORDS)
    assert view.query(RECORDS[0].stream_id) == _Tally(expected)


def test_restored_rows_stay_encoded_until_read_and_a_bad_one_raises_when_read() -> None:
    # Rows are decoded as they are read: the order views' rows of a restarted engine that no
    # event touches again keep their encoded size. The first row is decoded at once (a changed
    # row type is caught there, above); a later one that does not decode raises when read.
    rows: dict[str, Any] = {"a": _Tally(3), "b": _Tally(1), "c": _Named("not a tally")}
    view = MemoryView(_Counting())
    payload = b"".join(encode_state({"tally": rows}, {}))
    data = encode_snapshot("counting", view.model_version, 9, payload)
    assert view.restore(data) == 9
    assert view.query("a") == _Tally(3)
    table = view._state._tables["tally"].rows
    assert [type(table[key]) for key in "abc"] == [_Tally, msgspec.Raw, msgspec.Raw]
    assert view.query("b") == _Tally(1)
    assert type(table["b"]) is _Tally  # decoded once, kept
    with pytest.raises(SnapshotRowsError, match=r"'counting'.*'tally'"):
        view.query("c")
    assert view.query("zz") is None


# ---------------------------------------------------------------- files


def test_a_snapshot_goes_through_its_file_and_back(tmp_path: Path, model: ReadModel) -> None:
    view = _fed(model, RECORDS, HEAD)
    _, data = view.snapshot()
    path = write_snapshot_file(tmp_path, view.name, data)
    assert path == snapshot_path(tmp_path, view.name)
    assert read_snapshot_file(tmp_path, view.name) == data
    restored = MemoryView(model)
    assert restored.restore(data) == HEAD
    assert _answers(restored, _queries(model)) == _answers(view, _queries(model))


def test_a_leftover_temporary_file_does_not_confuse_reading(tmp_path: Path) -> None:
    model = OrderStatsModel()
    temporary = snapshot_path(tmp_path, model.name).with_name(
        snapshot_path(tmp_path, model.name).name + ".tmp"
    )
    tmp_path.mkdir(exist_ok=True)
    temporary.write_bytes(b"half a snapshot, from a crash")
    assert read_snapshot_file(tmp_path, model.name) is None

    _, old = _fed(model, RECORDS[:50], 50).snapshot()
    write_snapshot_file(tmp_path, model.name, old)
    temporary.write_bytes(b"another crash, mid-write")
    assert read_snapshot_file(tmp_path, model.name) == old

    _, new = _fed(model, RECORDS, HEAD).snapshot()
    write_snapshot_file(tmp_path, model.name, new)  # writing over a leftover works
    assert read_snapshot_file(tmp_path, model.name) == new
    assert not temporary.exists()


def test_reading_a_missing_snapshot_returns_none(tmp_path: Path) -> None:
    assert read_snapshot_file(tmp_path / "absent", "order_search") is None


def test_any_view_name_gets_its_own_file(tmp_path: Path) -> None:
    names = ["a/b", "..", "", "ü", "a.b"]
    for name in names:
        write_snapshot_file(tmp_path, name, name.encode())
    assert [read_snapshot_file(tmp_path, name) for name in names] == [n.encode() for n in names]


def test_a_snapshot_file_is_compressed_and_reads_back_whole(tmp_path: Path) -> None:
    _, data = _fed(OrderStatsModel(), RECORDS, HEAD).snapshot()
    parts: Parts = [data[:10], memoryview(data)[10:100], data[100:]]  # compressed part by part
    path = write_snapshot_file(tmp_path, "order_stats", parts)
    stored = path.read_bytes()
    assert stored.startswith(b"\x28\xb5\x2f\xfd")  # one zstd frame
    assert len(stored) < len(data)
    assert read_snapshot_file(tmp_path, "order_stats") == data


def test_a_snapshot_file_written_before_compression_reads_as_it_is(tmp_path: Path) -> None:
    _, data = _fed(OrderStatsModel(), RECORDS, HEAD).snapshot()
    snapshot_path(tmp_path, "order_stats").write_bytes(data)
    assert read_snapshot_file(tmp_path, "order_stats") == data
    restored = MemoryView(OrderStatsModel())
    assert restored.restore(data) == HEAD


@pytest.mark.parametrize("damage", ["truncated", "claims a huge size"])
def test_a_damaged_compressed_file_is_discarded(tmp_path: Path, damage: str) -> None:
    _, data = _fed(OrderStatsModel(), RECORDS, HEAD).snapshot()
    path = write_snapshot_file(tmp_path, "order_stats", data)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        # A frame header (no single segment, 8-byte content size) claiming 1 TiB, then one empty
        # last block: expanding it would first allocate the claimed size.
        huge = (2**40).to_bytes(8, "little")
        path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes([0xC0, 0x50]) + huge + b"\x01\x00\x00")
    with capture_logs() as logs:
        assert read_snapshot_file(tmp_path, "order_stats") is None
    assert [e["event"] for e in logs] == ["view_snapshot_discarded"]
    assert "damaged compressed file" in logs[0]["reason"]


# ---------------------------------------------------------------- misuse


@pytest.fixture
def filled(model: ReadModel) -> tuple[ReadModel, bytes]:
    return model, _fed(model, RECORDS, HEAD).snapshot()[1]


def test_restoring_into_a_view_with_rows_raises(filled: tuple[ReadModel, bytes]) -> None:
    model, data = filled
    view = _fed(model, RECORDS[:5], 5)
    with pytest.raises(ValueError, match="empty view"):
        view.restore(data)
    assert view.position() == 5


def test_restoring_twice_raises(filled: tuple[ReadModel, bytes]) -> None:
    model, data = filled
    view = MemoryView(model)
    view.restore(data)
    with pytest.raises(ValueError, match="empty view"):
        view.restore(data)


def test_restoring_into_a_view_past_position_0_raises_even_without_rows(
    filled: tuple[ReadModel, bytes],
) -> None:
    model, data = filled
    view = MemoryView(model)
    view.apply([], 3)  # other tags only: no row, but the position moved
    with pytest.raises(ValueError, match="empty view"):
        view.restore(data)


def test_restoring_into_a_view_with_rows_raises_before_looking_at_the_data() -> None:
    view = _fed(OrderDetailsModel(), RECORDS[:5], 5)
    with pytest.raises(ValueError, match="empty view"):
        view.restore(b"garbage")


def test_a_cleared_view_can_be_restored(filled: tuple[ReadModel, bytes]) -> None:
    model, data = filled
    view = _fed(model, RECORDS[:5], 5)
    view.clear()
    assert view.restore(data) == HEAD


def test_a_closed_view_neither_snapshots_nor_restores(filled: tuple[ReadModel, bytes]) -> None:
    model, data = filled
    view = MemoryView(model)
    view.close()
    with pytest.raises(EngineClosed):
        view.snapshot()
    with pytest.raises(EngineClosed):
        view.restore(data)


def test_the_model_version_defaults_to_1_and_must_be_an_int() -> None:
    assert MemoryView(_Counting()).model_version == 1
    assert MemoryView(OrderSearchModel()).model_version == 3  # 3: flat rows
    assert MemoryView(_Versioned(OrderSearchModel(), version=7)).model_version == 7
    for wrong in ("2", True, 1.0):
        view = MemoryView(_Versioned(OrderSearchModel(), version=wrong))
        with pytest.raises(TypeError, match="version must be an int"):
            view.snapshot()
