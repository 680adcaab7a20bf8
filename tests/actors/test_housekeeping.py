"""The housekeeping thread in a running engine: the log's compression dictionary."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from engine_kit import (
    add,
    all_events,
    assert_log_contiguous,
    create,
    new_id,
    open_engine,
)
from msgspec.structs import astuple
from waiting import wait_until

from actors import Engine
from views.orders import GetOrderById

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def stored_forms(engine: Engine) -> list[bool]:
    """Return, per position, whether LMDB holds the record compressed."""
    store = engine.store
    db = store._dbs["log"]
    return store.read(lambda txn: [bytes(v[:4]) == ZSTD_MAGIC for _, v in txn.cursor(db=db)])


def test_the_engine_trains_a_dictionary_when_due_and_every_read_path_sees_the_same_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("store._training.FIRST_TRAINING", 60)
    orders = [new_id() for _ in range(30)]
    with open_engine(tmp_path, views=None) as engine:  # the default views
        for order_id in orders:
            engine.execute(create(order_id))
            engine.execute(add(order_id, "pear"))
            engine.execute(add(order_id, "plum"))
        assert engine.status().log_dictionary == 0
        wait_until(lambda: engine.store.frames.current is not None)
        assert engine.status().log_dictionary == 1
        for order_id in orders:  # each aggregate appends after the dictionary came
            engine.execute(add(order_id, "fig", quantity=2))
        head = engine.store.head()
        assert engine.wait_for_views(head, timeout=10)
        forms = stored_forms(engine)
        assert forms[:90] == [False] * 90
        assert forms[-30:] == [True] * 30
        details = engine.query(GetOrderById(order_id=orders[-1]), after=head)
        # apple 2.50 + pear 1.00 + plum 1.00 + 2 figs at 1.00: the last event counted too.
        assert (details.item_count, details.total_amount) == (5, Decimal("6.50"))
        before = [astuple(event) for event in all_events(engine.store)]
        engine.rebuild()  # replays the compressed log into fresh views
        assert engine.query(GetOrderById(order_id=orders[0]), after=head) == engine.query(
            GetOrderById(order_id=orders[0])
        )
    with open_engine(tmp_path, views=None) as engine:
        # Another engine, another codec: its records are of another (equal-shaped) class.
        assert [astuple(event) for event in all_events(engine.store)] == before
        streams = assert_log_contiguous(engine.store)
        assert len(streams) == 30
        # A fresh aggregate replays its compressed stream: version 5 comes next.
        result = engine.execute(add(orders[3], "kiwi"))
        assert result.version == 5
        assert engine.store.frames.current is not None
        assert stored_forms(engine)[-1]
