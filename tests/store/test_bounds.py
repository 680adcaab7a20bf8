"""Reads answered from key bounds without LMDB: never wrong, whatever the ids' order.

``lookup_command``, ``stream_version``, ``read_stream`` and ``load_snapshot`` answer "absent"
for a key above every key its table may hold (see ``store._bounds``). These tests hold them to
a plain model over random id orders, stream types whose names prefix each other, reopens, a
write reported failed after its commit, and a reader racing the appends; and the appends' own
answers (duplicates, versions) to the same model, also with two threads sending the same ids.
"""

from __future__ import annotations

import pathlib
import tempfile
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NoReturn

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.orders import OrderItemAdded
from store import Codec, Committed, EventStore, Snapshot, StreamAppend

_IDS = st.text(alphabet="abcz019-.é", min_size=1, max_size=6)
_TYPES = ("order", "order2", "a", "zz")  # "order" prefixes "order2"; "zz" sorts after all
TIMEOUT = 30
_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _append(stream_type: str, stream_id: str, expected: int, command_id: str = "") -> StreamAppend:
    event = OrderItemAdded(order_id=stream_id, product_id="p", quantity=1, price=Decimal("1.00"))
    return StreamAppend(
        stream_id=stream_id,
        stream_type=stream_type,
        expected_version=expected,
        events=[event],
        command_id=command_id,
        fingerprint=b"f",
    )


@_EXAMPLES
@given(steps=st.lists(st.tuples(st.lists(_IDS, max_size=4), st.booleans()), max_size=12))
def test_command_lookups_agree_with_every_recorded_id_whatever_their_order(
    codec: Codec, steps: list[tuple[list[str], bool]]
) -> None:
    recorded: set[str] = set()
    asked: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(tmp, codec=codec, durability="async")
        try:
            for number, (ids, reopen) in enumerate(steps):
                store.append_batch(
                    [_append("order", f"s{number}-{i}", 0, cid) for i, cid in enumerate(ids)]
                )
                recorded.update(ids)
                asked.update(ids)
                asked.update(cid + "~" for cid in ids)  # just above a recorded id
                if reopen:
                    store.close()
                    store = EventStore.open(tmp, codec=codec, durability="async")
                for cid in asked:
                    assert (store.lookup_command(cid) is not None) == (cid in recorded), cid
        finally:
            store.close()


@_EXAMPLES
@given(
    steps=st.lists(
        st.tuples(st.lists(st.tuples(st.sampled_from(_TYPES), _IDS), max_size=4), st.booleans()),
        max_size=10,
    )
)
def test_stream_reads_agree_with_a_model_whatever_the_ids_and_types(
    codec: Codec, steps: list[tuple[list[tuple[str, str]], bool]]
) -> None:
    versions: dict[tuple[str, str], int] = {}
    asked: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(tmp, codec=codec, durability="async")
        try:
            for streams, reopen in steps:
                # One append per stream per batch (a second would conflict on its version).
                batch = {stream: versions.get(stream, 0) for stream in streams}
                store.append_batch([_append(t, i, v) for (t, i), v in batch.items()])
                for stream in batch:
                    versions[stream] = versions.get(stream, 0) + 1
                    store.save_snapshot(Snapshot(stream[1], stream[0], versions[stream], 1, b"s"))
                    asked.update({stream, (stream[0], stream[1] + "~"), (stream[0] + "2", "~")})
                if reopen:
                    store.close()
                    store = EventStore.open(tmp, codec=codec, durability="async")
                for stream_type, stream_id in asked:
                    expected = versions.get((stream_type, stream_id), 0)
                    assert store.stream_version(stream_id, stream_type=stream_type) == expected
                    events = store.read_stream(stream_id, stream_type=stream_type)
                    assert len(events) == expected
                    snapshot = store.load_snapshot(stream_id, stream_type=stream_type)
                    assert (snapshot is not None) == (expected > 0)
        finally:
            store.close()


def test_a_write_reported_failed_after_its_commit_is_still_found(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_batch([_append("order", "a", 0, "cmd-1")])
    real = store.write

    def committed_then_failed(fn: Callable[[Any], object]) -> NoReturn:
        real(fn)
        raise lmdb.Error("injected: failed after the commit")

    monkeypatch.setattr(store, "write", committed_then_failed)
    with pytest.raises(lmdb.Error, match="injected"):
        store.append_batch([_append("order", "b", 0, "cmd-9")])
    monkeypatch.undo()
    record = store.lookup_command("cmd-9")  # the bounds covered it before the write began
    assert record is not None
    assert record.stream_id == "b"
    assert store.stream_version("b", stream_type="order") == 1
    assert len(store.read_stream("b", stream_type="order")) == 1
    assert store.lookup_command("cmd-99") is None


def test_a_reader_racing_the_appends_always_sees_what_was_committed(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    done: list[str] = []  # stream ids whose append returned
    failures: list[str] = []
    stop = threading.Event()
    with EventStore.open(tmp_path / "data", codec=codec, durability="async") as store:

        def read() -> None:
            while not stop.is_set():
                if done:
                    last = done[-1]
                    if store.stream_version(last, stream_type="order") != 1:
                        failures.append(last)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            for number in range(400):
                stream_id = f"s-{number:05d}"
                store.append_batch([_append("order", stream_id, 0)])
                done.append(stream_id)
        finally:
            stop.set()
            reader.join(TIMEOUT)
        assert not reader.is_alive()
    assert failures == []


def test_a_snapshot_saved_apart_from_any_append_is_found_before_and_after_a_reopen(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    with EventStore.open(tmp_path / "data", codec=codec, durability="async") as store:
        store.append_batch([_append("order", "a", 0)])
        assert store.load_snapshot("z", stream_type="order") is None  # the bound is read now
        store.save_snapshot(Snapshot("z", "order", 3, 1, b"z"))
        assert store.load_snapshot("z", stream_type="order") is not None
    with EventStore.open(tmp_path / "data", codec=codec, durability="async") as store:
        found = store.load_snapshot("z", stream_type="order")
        assert found == Snapshot("z", "order", 3, 1, b"z")
        assert store.stream_version("zz", stream_type="order") == 0


@_EXAMPLES
@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(_TYPES), _IDS, _IDS), max_size=5), st.booleans()
        ),
        max_size=10,
    )
)
def test_the_writer_reads_every_key_an_earlier_batch_may_have_written(
    codec: Codec, steps: list[tuple[list[tuple[str, str, str]], bool]]
) -> None:
    # The writer's own reads (command ids, heads): retries and existing streams are found
    # whatever the ids' order, within a batch, across batches and across reopens.
    versions: dict[tuple[str, str], int] = {}
    commands: dict[str, tuple[str, int]] = {}  # command id -> (stream id, version)
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(tmp, codec=codec, durability="async")
        try:
            for spec, reopen in steps:
                appends, expected = [], []
                for stream_type, stream_id, command_id in spec:
                    version = versions.get((stream_type, stream_id), 0)
                    appends.append(_append(stream_type, stream_id, version, command_id))
                    if command_id in commands:
                        expected.append((True, commands[command_id]))
                    else:
                        versions[stream_type, stream_id] = version + 1
                        commands[command_id] = (stream_id, version + 1)
                        expected.append((False, (stream_id, version + 1)))
                results = store.append_batch(appends)
                for result, (duplicate, want) in zip(results, expected, strict=True):
                    assert isinstance(result, Committed), result
                    assert result.duplicate is duplicate
                    assert (result.stream_id, result.version) == want
                if reopen:
                    store.close()
                    store = EventStore.open(tmp, codec=codec, durability="async")
        finally:
            store.close()


def test_threads_appending_the_same_new_command_ids_record_each_once(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    # Both threads send every id, on streams of their own: exactly one append per id commits,
    # the other is answered as its duplicate, whichever transaction ran first.
    results: dict[str, list[Committed]] = {"x": [], "y": []}
    errors: list[BaseException] = []
    with EventStore.open(tmp_path / "data", codec=codec, durability="async") as store:

        def send(name: str) -> None:
            try:
                for number in range(300):
                    command_id = f"c-{number:05d}"
                    (result,) = store.append_batch(
                        [_append("order", f"{name}-{number:05d}", 0, command_id)]
                    )
                    assert isinstance(result, Committed), result
                    results[name].append(result)
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=send, args=(name,)) for name in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        for number, (x, y) in enumerate(zip(results["x"], results["y"], strict=True)):
            assert x.duplicate != y.duplicate, number
            assert (x.stream_id, x.version) == (y.stream_id, y.version)
            winner = x.stream_id
            assert store.stream_version(winner, stream_type="order") == 1
            loser = ("y" if winner.startswith("x") else "x") + winner[1:]
            assert store.stream_version(loser, stream_type="order") == 0
