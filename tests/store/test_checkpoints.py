from __future__ import annotations

import pathlib

import lmdb
import pytest

from store import Codec, EventStore, ParkedEvent


def test_a_view_without_checkpoint_is_at_zero_and_checkpoints_persist(
    tmp_path: pathlib.Path, codec: Codec
) -> None:
    with EventStore.open(tmp_path, codec=codec) as store:
        assert store.checkpoint("orders") == 0
        store.set_checkpoint("orders", 42)
        store.set_checkpoint("stats", 7)
    with EventStore.open(tmp_path, codec=codec) as store:
        assert store.checkpoint("orders") == 42
        assert store.checkpoint("stats") == 7


def test_a_checkpoint_commits_atomically_with_the_views_rows(store: EventStore) -> None:
    db = store.open_db("view:orders")
    assert store.open_db("view:orders") is db

    def apply(txn: lmdb.Transaction) -> int:
        txn.put(b"row", b"1", db=db)
        store.set_checkpoint("orders", 10, txn=txn)
        return 10

    assert store.write(apply) == 10

    def fail(txn: lmdb.Transaction) -> None:
        txn.put(b"row", b"2", db=db)
        store.set_checkpoint("orders", 11, txn=txn)
        raise RuntimeError("apply failed")

    with pytest.raises(RuntimeError):
        store.write(fail)
    assert store.checkpoint("orders") == 10
    assert store.read(lambda txn: txn.get(b"row", db=db)) == b"1"


def test_a_views_database_can_be_emptied_and_dropped(store: EventStore) -> None:
    db = store.open_db("view:x")
    store.write(lambda txn: txn.put(b"k", b"v", db=db))
    store.drop_db("view:x", delete=False)
    assert store.read(lambda txn: txn.get(b"k", db=db)) is None
    store.drop_db("view:x")
    again = store.open_db("view:x")
    assert store.read(lambda txn: txn.get(b"k", db=again)) is None
    with pytest.raises(ValueError, match="reserved"):
        store.open_db("log")


def test_parked_events_are_listed_by_view_and_can_be_unparked(store: EventStore) -> None:
    # Position 256 has a NUL byte in its key: names must not be split on it.
    store.park(ParkedEvent("orders", 256, "boom", 3, 111))
    store.park(ParkedEvent("orders", 5, "bang", 3, 222))
    store.park(ParkedEvent("stats", 9, "oops", 1, 333))
    store.park(ParkedEvent("orders2", 1, "other", 1, 444))
    assert [p.position for p in store.parked("orders")] == [5, 256]
    assert store.parked("orders")[1] == ParkedEvent("orders", 256, "boom", 3, 111)
    assert [(p.view, p.position) for p in store.parked()] == [
        ("orders", 5),
        ("orders", 256),
        ("orders2", 1),
        ("stats", 9),
    ]
    assert store.unpark("orders", 5)
    assert not store.unpark("orders", 5)
    assert [p.position for p in store.parked("orders")] == [256]


def test_view_names_with_nul_are_refused(store: EventStore) -> None:
    with pytest.raises(ValueError, match="view name"):
        store.checkpoint("a\x00b")
