"""The tables around the log (``store._upkeep``): what the module itself decides.

The snapshots, retention, parked events and dictionaries have their own test modules
(``test_snapshots``, ``test_retention``, ``test_checkpoints``, ``test_frames``); these tests
cover the store-level rules kept here: a read of a new stream still refuses a closed store, and
the older layout's view data is dropped, and only it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import lmdb
import pytest

from domain.errors import EngineClosed
from store import EventStore

if TYPE_CHECKING:
    from store._env import Database


def test_a_new_streams_snapshot_needs_no_read_but_a_closed_store_still_refuses(
    store: EventStore,
) -> None:
    assert store.load_snapshot("order-never-written", stream_type="Order") is None
    store.close()
    with pytest.raises(EngineClosed):
        store.load_snapshot("order-never-written", stream_type="Order")


def test_only_the_older_layouts_view_databases_are_dropped(store: EventStore) -> None:
    kept = store.open_db("saga:notes")
    store.write(lambda txn: txn.put(b"k", b"v", db=kept))
    for name in ("view:order_details:0", "view:order_stats:1"):
        store.write(functools.partial(_put_junk, store.open_db(name)))
    store.set_checkpoint("order_details", 3)

    assert store.drop_legacy_views() == 2

    left = store.read(_names)
    assert not [name for name in left if name.startswith(b"view:")]
    assert b"saga:notes" in left
    assert store.read(lambda txn: txn.get(b"k", db=kept)) == b"v"
    assert store.checkpoints() == {}  # the old views' checkpoints went with them
    assert store.drop_legacy_views() == 0  # nothing left: nothing written


def _put_junk(db: Database, txn: lmdb.Transaction) -> None:
    txn.put(b"t\x00stale", b"junk", db=db)


def _names(txn: lmdb.Transaction) -> list[bytes]:
    return [bytes(name) for name in txn.cursor().iternext(keys=True, values=False)]
