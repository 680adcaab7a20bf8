"""An LMDB view's two slots and its version record (``views._lmdb_slots``), on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from store import ViewStore
from views._lmdb_keys import KEY_LAYOUT
from views._lmdb_slots import Slots


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ViewStore]:
    opened = ViewStore.open(tmp_path / "views")
    try:
        yield opened
    finally:
        opened.close()


def _fill(store: ViewStore, slots: Slots, slot: int, rows: int) -> None:
    def put(txn: lmdb.Transaction) -> None:
        for number in range(rows):
            txn.put(f"t{number}".encode(), b"row", db=slots.dbs[slot])

    store.write(put)


def _rows(store: ViewStore, slots: Slots, slot: int) -> int:
    return store.read(lambda txn: int(txn.stat(slots.dbs[slot])["entries"]))


def test_slot_zero_is_live_until_a_flip_and_a_flip_empties_the_old_slot(store: ViewStore) -> None:
    slots = Slots(store, "orders")
    assert store.read(slots.live) == 0
    _fill(store, slots, 0, 3)
    _fill(store, slots, 1, 5)
    store.set_checkpoint("orders", 40)
    store.set_checkpoint("orders:shadow", 70)

    slots.flip(1, 70, "orders", "orders:shadow")

    assert store.read(slots.live) == 1
    assert (_rows(store, slots, 0), _rows(store, slots, 1)) == (0, 5)
    assert (store.checkpoint("orders"), store.checkpoint("orders:shadow")) == (70, 0)
    # Another handle on the same view sees the same live slot (it is recorded, not kept here).
    assert store.read(Slots(store, "orders").live) == 1
    slots.flip(0, 71, "orders", "orders:shadow")
    assert store.read(slots.live) == 0
    assert _rows(store, slots, 1) == 0


def test_empty_resets_one_slot_and_its_checkpoint_only(store: ViewStore) -> None:
    slots = Slots(store, "orders")
    _fill(store, slots, 0, 3)
    _fill(store, slots, 1, 2)
    store.set_checkpoint("orders", 9)
    store.set_checkpoint("orders:shadow", 4)

    slots.empty(1, "orders:shadow")

    assert (_rows(store, slots, 0), _rows(store, slots, 1)) == (3, 0)
    assert (store.checkpoint("orders"), store.checkpoint("orders:shadow")) == (9, 0)


def test_restart_empties_both_slots_and_records_the_version(store: ViewStore) -> None:
    slots = Slots(store, "orders")
    other = Slots(store, "customers")
    _fill(store, slots, 0, 3)
    _fill(store, slots, 1, 2)
    _fill(store, other, 0, 1)
    store.set_checkpoint("orders", 9)
    store.set_checkpoint("orders:shadow", 4)
    assert store.read(slots.stored_version)[0] == 1  # nothing recorded: version 1

    slots.restart(3, ("orders", "orders:shadow"))

    assert (_rows(store, slots, 0), _rows(store, slots, 1)) == (0, 0)
    assert (store.checkpoint("orders"), store.checkpoint("orders:shadow")) == (0, 0)
    assert store.read(slots.stored_version) == (3, KEY_LAYOUT)
    assert store.read(other.stored_version)[0] == 1  # another view's record is its own
    assert _rows(store, other, 0) == 1
