"""Compressed log records (store._frames): every read path returns what was appended."""

from __future__ import annotations

import pathlib
from decimal import Decimal

import lmdb
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import CorruptLog
from domain.orders import OrderItemAdded
from store import Codec, EventStore, RecordedEvent, StreamAppend
from store._follower import LogFollower
from store._frames import LogFrames, train

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def added(order_id: str, index: int) -> OrderItemAdded:
    return OrderItemAdded(
        order_id=order_id,
        product_id=f"sku-{index % 37}",
        quantity=index % 9 + 1,
        price=Decimal("9.99"),
    )


def fill(store: EventStore, orders: int, per_order: int, tag: str) -> None:
    """Append ``per_order`` events to each of ``orders`` streams, one command each."""
    appends = []
    for order in range(orders):
        stream = f"{tag}-{order:04d}"
        version = store.stream_version(stream, stream_type="order")
        appends.append(
            StreamAppend(
                stream_id=stream,
                stream_type="order",
                expected_version=version,
                events=[added(stream, order * per_order + i) for i in range(per_order)],
                command_id=f"cmd-{tag}-{order:04d}",
                fingerprint=b"f",
            )
        )
    store.append_batch(appends)


def stored_values(store: EventStore) -> dict[int, bytes]:
    """Return the log's values as LMDB holds them (compressed or not)."""
    db = store._dbs["log"]
    return store.read(
        lambda txn: {int.from_bytes(k, "big"): bytes(v) for k, v in txn.cursor(db=db)}
    )


def everything(store: EventStore) -> list[RecordedEvent]:
    return [record for batch in store.read_all(batch_size=7) for record in batch]


def test_records_are_plain_until_a_dictionary_is_trained_then_compressed(
    store: EventStore,
) -> None:
    fill(store, 40, 3, "a")
    assert store.frames.current is None
    assert all(value[:1] == b"\x99" for value in stored_values(store).values())
    before = everything(store)

    dictionary = store.train_dictionary()

    assert dictionary is not None
    assert dictionary.dict_id == 1
    assert dictionary.trained_at == 120
    fill(store, 40, 3, "b")
    values = stored_values(store)
    plain, packed = [values[p] for p in range(1, 121)], [values[p] for p in range(121, 241)]
    assert all(value.startswith(ZSTD_MAGIC) for value in packed)
    assert sum(map(len, packed)) < 0.6 * sum(map(len, plain))
    records = everything(store)
    assert records[:120] == before
    assert [r.stream_id for r in records[120:]] == [
        f"b-{o:04d}" for o in range(40) for _ in range(3)
    ]
    assert store.read_stream("b-0007", stream_type="order")[2].event == added("b-0007", 23)
    found = store.lookup_command("cmd-b-0039")
    assert found is not None
    assert (found.stream_id, found.version) == ("b-0039", 3)
    assert [p for p, _ in store.read_raw(119, 4)] == [119, 120, 121, 122]
    assert store.codec.decode_record(121, store.read_raw(121, 1)[0][1]) == records[120]


def test_compressed_records_read_back_after_reopen_and_from_a_follower(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=codec, durability="async") as store:
        fill(store, 30, 2, "a")
        assert store.train_dictionary() is not None
        fill(store, 30, 2, "b")
        expected = everything(store)
    with EventStore.open(path, codec=codec, durability="async") as store:
        assert store.frames.current is not None
        assert store.frames.current.dict_id == 1
        assert everything(store) == expected
        fill(store, 30, 1, "c")  # the reopened store compresses with the stored dictionary
        assert stored_values(store)[store.head()].startswith(ZSTD_MAGIC)
        expected = everything(store)
    follower = LogFollower(path, codec=codec)
    try:
        assert [r for batch in follower.read_all(batch_size=16) for r in batch] == expected
    finally:
        follower.close()


def test_a_batch_across_two_dictionaries_and_plain_records_reads_back(store: EventStore) -> None:
    fill(store, 20, 2, "a")
    first = store.train_dictionary()
    fill(store, 20, 2, "b")
    # Other event shapes: the retrained dictionary must beat the first one by 10% to be kept.
    store.append_batch(
        [
            StreamAppend(
                stream_id=f"long-{i}",
                stream_type="order",
                expected_version=0,
                events=[added(f"long-{i}-{'x' * 80}", i) for _ in range(3)],
                command_id=f"cmd-long-{i}",
                fingerprint=b"f",
            )
            for i in range(60)
        ]
    )
    second = store.train_dictionary()
    assert first is not None
    assert second is not None
    assert second.dict_id == 2
    fill(store, 20, 2, "c")
    values = stored_values(store)
    dict_ids = [
        zstandard.get_frame_parameters(values[p]).dict_id if values[p][:4] == ZSTD_MAGIC else 0
        for p in range(1, store.head() + 1)
    ]
    assert dict_ids == [0] * 40 + [1] * 220 + [2] * 40
    records = everything(store)
    assert [r.position for r in records] == list(range(1, store.head() + 1))
    # One read spanning plain, first-dictionary and second-dictionary records.
    span = next(store.read_all(from_position=30, batch_size=store.head()))
    assert span == records[29:]


def test_a_candidate_no_better_than_the_current_dictionary_is_not_installed(
    store: EventStore,
) -> None:
    fill(store, 40, 3, "a")
    first = store.train_dictionary()
    assert first is not None
    assert store.train_dictionary() is None  # same records: not 10% better
    assert store.frames.current == first
    assert store.train_dictionary_if_due() is None  # deferred until the log doubles


def test_training_is_due_at_the_first_threshold_then_at_sixteen_times(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("store._training.FIRST_TRAINING", 50)
    fill(store, 24, 2, "a")
    assert store.train_dictionary_if_due() is None  # 48 < 50
    fill(store, 1, 2, "b")
    trained = store.train_dictionary_if_due()
    assert trained is not None
    assert trained.trained_at == 50
    fill(store, 100, 7, "c")  # 750 < 16 x 50
    assert store.train_dictionary_if_due() is None


def overwrite(store: EventStore, position: int, value: bytes) -> None:
    db = store._dbs["log"]
    store.write(lambda txn: txn.put(position.to_bytes(8, "big"), value, db=db))


def test_a_damaged_frame_raises_corrupt_log_naming_its_position(store: EventStore) -> None:
    fill(store, 20, 2, "a")
    assert store.train_dictionary() is not None
    fill(store, 20, 2, "b")
    good = stored_values(store)[50]
    overwrite(store, 50, good[:-3] + b"\xff\xff\xff")
    with pytest.raises(CorruptLog) as raised:
        everything(store)
    assert raised.value.position == 50


def test_a_frame_naming_a_missing_dictionary_raises_corrupt_log(store: EventStore) -> None:
    fill(store, 20, 2, "a")
    assert store.train_dictionary() is not None
    fill(store, 20, 2, "b")
    dicts = store._dbs["dicts"]
    store.write(lambda txn: txn.delete((1).to_bytes(4, "big"), db=dicts))
    fresh = LogFrames(lambda: dicts)  # knows no dictionary yet: must find it in the table
    with pytest.raises(CorruptLog, match="dictionary 1, not stored") as raised:
        store.read(lambda txn: fresh.expand(txn, [stored_values(store)[45]], [45]))
    assert raised.value.position == 45


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["plain", "one", "two"]), st.binary(min_size=1, max_size=300)),
        min_size=1,
        max_size=40,
    )
)
def test_expand_returns_every_value_whatever_the_mix_of_forms(
    tmp_path_factory: pytest.TempPathFactory, mix: list[tuple[str, bytes]]
) -> None:
    samples = [b"\x99" + bytes([i % 251]) * (40 + i % 60) + b"order-event" for i in range(200)]
    one, two = train(samples, 1, 200), train(samples[::-1], 2, 400)
    assert one is not None
    assert two is not None
    env = lmdb.open(str(tmp_path_factory.mktemp("frames")), max_dbs=2)
    try:
        dicts = env.open_db(b"dicts")
        with env.begin(write=True) as txn:
            for dictionary in (one, two):
                txn.put(dictionary.key(), dictionary.row(), db=dicts)
        writers = {}
        for name, dictionary in (("one", one), ("two", two)):
            frames = LogFrames(lambda: dicts)
            frames.install(dictionary)
            writers[name] = frames
        values = [
            b"\x99" + data if form == "plain" else writers[form].compress([b"\x99" + data])[0]
            for form, data in mix
        ]
        reader = LogFrames(lambda: dicts)
        with env.begin() as txn:
            expanded = reader.expand(txn, values, range(1, len(values) + 1))
        assert expanded == [b"\x99" + data for _, data in mix]
    finally:
        env.close()


def test_a_frame_whose_header_claims_a_huge_size_raises_corrupt_log_not_memory_error(
    store: EventStore,
) -> None:
    fill(store, 20, 2, "a")
    assert store.train_dictionary() is not None
    fill(store, 20, 2, "b")
    good = stored_values(store)[60]
    descriptor = good[4]
    dict_id_bytes = (0, 1, 2, 4)[descriptor & 0b11]
    single_segment = descriptor >> 5 & 1
    fcs_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    window = 0 if single_segment else 1
    body = good[5 + window + dict_id_bytes + fcs_bytes :]
    # The same frame, its content size field widened to 8 bytes that claim ~2**63 bytes.
    claimed = bytes([descriptor | 0b1100_0000]) + good[5 : 5 + window + dict_id_bytes]
    damaged = good[:4] + claimed + (2**63).to_bytes(8, "little") + body
    overwrite(store, 60, damaged)
    with pytest.raises(CorruptLog) as raised:
        everything(store)
    assert raised.value.position == 60
