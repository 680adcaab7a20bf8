"""Views at position 0 catch up as a rebuild does: the log folded into rows, then loaded."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from readside_kit import WAIT, OrderModel, assert_answers, create, random_steps, run_steps
from test_projector import write_mystery_event
from waiting import wait_until

from actors import Engine
from actors._folding import Folding
from actors._row_groups import RowGroup
from views import MemoryView
from views.orders import GetOrderById, GetOrderStats, OrderDetailsModel, order_views


def _written_without_views(path: Path, steps: int, seed: int = 7) -> OrderModel:
    """Write a log with ``views=[]`` (no view rows anywhere); return its model."""
    model = OrderModel()
    with Engine.open(path, durability="async", views=[]) as engine:
        run_steps(engine, model, random_steps(seed, steps))
    return model


def _count_feeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    feeds: list[int] = []
    feed = RowGroup.feed

    def counted(group: RowGroup, store: Any, records: Any, up_to: int, parked: Any) -> None:
        feeds.append(len(records))
        feed(group, store, records, up_to, parked)

    monkeypatch.setattr(RowGroup, "feed", counted)
    return feeds


def test_views_at_zero_fold_the_log_and_answer_as_a_replay_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _written_without_views(tmp_path, 400)
    feeds = _count_feeds(monkeypatch)
    with Engine.open(tmp_path) as engine:  # two LMDB and two memory views, all at 0
        assert engine.wait_for_views(model.head, timeout=WAIT)
        assert_answers(engine, model, model.probes())
        assert {view.position for view in engine.status().views.values()} == {model.head}
        assert engine.status().parked_events == 0
        # Folded, one shared fold for the four views: not applied event by event.
        assert sum(feeds) == model.head
        # Live commands after the load go event by event.
        run_steps(engine, model, random_steps(8, 50))
        assert engine.wait_for_views(model.head, timeout=WAIT)
        assert_answers(engine, model, model.probes())
    with Engine.open(tmp_path) as engine:  # reopened: checkpoints and snapshots, no fold
        feeds.clear()
        assert engine.wait_for_views(model.head, timeout=WAIT)
        assert_answers(engine, model, model.probes())
        assert feeds == []


def test_commands_committed_while_the_views_fold_are_neither_lost_nor_applied_twice(
    tmp_path: Path,
) -> None:
    with Engine.open(tmp_path, durability="async", views=[]) as engine:
        futures = [engine.submit(create(f"o-{number}")) for number in range(4500)]
        for future in futures:
            future.get(timeout=WAIT)
    model = OrderModel()
    with Engine.open(tmp_path, durability="async") as engine:
        # Sent at once: the views fold 4,500 events over several projector steps meanwhile, so
        # these commits land before, during and after the fold reaches the head.
        run_steps(engine, model, random_steps(11, 300))
        assert engine.wait_for_views(model.head, timeout=WAIT)
        stats = engine.query(GetOrderStats())
        assert stats.total_orders == 4500 + len(model.orders)
        for order_id in list(model.orders)[:20]:
            assert engine.query(GetOrderById(order_id)) == model.answer(GetOrderById(order_id))
        assert engine.status().parked_events == 0


def test_a_corrupt_record_ends_the_fold_and_the_views_stall_before_it(tmp_path: Path) -> None:
    model = _written_without_views(tmp_path, 60)
    bad = write_mystery_event(tmp_path)
    with Engine.open(tmp_path) as engine:
        assert wait_until(lambda: all(s.error for s in engine.status().views.values()))
        for stalled in engine.status().views.values():
            assert "CorruptLog" in stalled.error
            assert stalled.position == bad - 1  # everything before it applied, event by event
        assert_answers(engine, model, model.probes())


class _FailingLoad(MemoryView):
    """A real memory view whose first load of folded rows fails halfway (fault injection)."""

    def __init__(self) -> None:
        super().__init__(OrderDetailsModel())
        self.failed = False

    def load_rows(self, rows: Any, up_to: int) -> None:
        """Write the first half of the rows, then fail, once."""
        if not self.failed:
            self.failed = True
            super().load_rows(list(rows)[: len(rows) // 2], 0)
            raise RuntimeError("injected: the load fails halfway")
        super().load_rows(rows, up_to)


def test_a_view_whose_load_fails_is_emptied_and_catches_up_event_by_event(
    tmp_path: Path,
) -> None:
    model = _written_without_views(tmp_path, 300)
    failing = _FailingLoad()
    views = [failing, *order_views(None)[1:]]
    with Engine.open(tmp_path, views=views) as engine:
        assert engine.wait_for_views(model.head, timeout=WAIT)
        assert failing.failed
        # Its half-written rows were dropped before it replayed: nothing applied twice.
        assert_answers(engine, model, model.probes())
        assert engine.status().parked_events == 0


class _GatedLoad(MemoryView):
    """A real memory view whose load of folded rows waits for ``gate`` (bounded)."""

    def __init__(self) -> None:
        super().__init__(OrderDetailsModel())
        self.gate = threading.Event()
        self.entered = threading.Event()

    def load_rows(self, rows: Any, up_to: int) -> None:
        """Say it is loading, wait for the gate, then load."""
        self.entered.set()
        self.gate.wait(WAIT)
        super().load_rows(rows, up_to)


def test_status_shows_how_far_the_views_have_folded_before_they_load(tmp_path: Path) -> None:
    orders = 4500  # more than two projector steps of 2,000 events
    with Engine.open(tmp_path, durability="async", views=[]) as engine:
        futures = [engine.submit(create(f"o-{number}")) for number in range(orders)]
        for future in futures:
            future.get(timeout=WAIT)
    gated = _GatedLoad()
    with Engine.open(tmp_path, views=[gated, *order_views(None)[1:]]) as engine:
        try:
            assert gated.entered.wait(WAIT)
            for name, view in engine.status().views.items():
                # Folded past the first step, not loaded yet: position 0 until the rows land.
                assert view.position == 0, name
                assert 2000 <= view.folded < orders, name
        finally:
            gated.gate.set()
        assert engine.wait_for_views(orders, timeout=WAIT)
        assert {(v.position, v.folded) for v in engine.status().views.values()} == {(orders, 0)}
        assert engine.query(GetOrderStats()).total_orders == orders
        assert engine.query(GetOrderById("o-4499")) is not None


def test_a_view_taken_out_of_its_group_is_no_longer_folded() -> None:
    views = order_views(None)
    folding = Folding(views)
    assert folding.names() == {view.name for view in views}
    folding.drop("order_search")
    assert folding.names() == {"order_details", "customer_orders", "order_stats"}
    for view in views:
        folding.drop(view.name)
    assert folding.names() == frozenset()
