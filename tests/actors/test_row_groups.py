"""A rebuild's row groups: the order views fold the log into rows once, then each writes them."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from readside_kit import OrderModel, StepClock, answers, create, run_steps, steps

import actors._rebuild as rebuild_module
import actors._row_groups as row_groups_module
from actors import Engine
from actors._replay import replay_many
from actors._row_groups import RowGroup, row_groups
from domain.orders import ORDERS, OrderShipped
from store import Codec, EventStore, StreamAppend
from views import MemoryView, View
from views.orders import GetOrderById, GetOrderStats, SearchOrders, order_views

VIEW_NAMES = ("order_details", "customer_orders", "order_search", "order_stats")
Backend = Literal["memory", "lmdb"]


@pytest.mark.parametrize("backend", ["memory", "lmdb"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_a_rebuild_by_rows_answers_as_the_views_applied_event_by_event(
    backend: Backend, steps: Sequence[tuple[int, int, int, int, int, int]]
) -> None:
    # Every order view on one backend: the search and stats models on LMDB (generic views)
    # and the details and customer models in memory load rows too, not only the defaults.
    model = OrderModel()
    backends: dict[str, Backend] = dict.fromkeys(VIEW_NAMES, backend)
    with (
        tempfile.TemporaryDirectory() as directory,
        Engine.open(
            directory, durability="async", clock=StepClock(), view_backends=backends
        ) as engine,
    ):
        run_steps(engine, model, steps)
        probes = model.probes()
        live = answers(engine, probes, after=model.head)  # applied event by event
        assert live == [model.answer(query) for query in probes]
        report = engine.rebuild()
        assert report.events == model.head
        assert answers(engine, probes) == live
        assert {s.position for s in engine.status().views.values()} == {model.head}
        assert engine.status().parked_events == 0


def _log_with_a_poison_event(path: Path) -> None:
    """Write, before any engine opens ``path``, a shipment of an order never created."""
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        store.append_batch(
            [
                StreamAppend(
                    stream_id="never-created",
                    stream_type="order",
                    expected_version=0,
                    events=[OrderShipped(order_id="never-created", shipped_at=datetime.now(UTC))],
                    timestamp=1,
                )
            ]
        )


def test_a_poison_event_is_parked_for_every_view_of_the_group_and_the_rest_applies(
    tmp_path: Path,
) -> None:
    _log_with_a_poison_event(tmp_path)
    with Engine.open(tmp_path, durability="async") as engine:
        engine.execute(create("o-1"))
        engine.execute(create("o-2"))
        assert engine.wait_for_views(3, timeout=60)
        live = [p.position for name in VIEW_NAMES for p in engine.parked(name)]
        assert live == [1, 1, 1, 1]  # every order view refuses it when applying it
        report = engine.rebuild()
        assert report.events == 3
        for name in VIEW_NAMES:
            parked = engine.parked(name)
            assert [p.position for p in parked] == [1], name
            assert "does not exist" in parked[0].error
        assert engine.query(GetOrderStats()).total_orders == 2
        assert engine.query(SearchOrders()).total == 2
        assert engine.query(GetOrderById("never-created")) is None
        # A retry still refuses it: it stays parked, nothing is applied twice.
        assert engine.retry_parked("order_stats", 1) is False
        assert engine.query(GetOrderStats()).total_orders == 2


def test_a_group_over_its_key_limit_loads_and_goes_on_event_by_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []
    load = RowGroup.load

    def counted(group: RowGroup) -> None:
        loads.append(group.folded)
        load(group)

    monkeypatch.setattr(RowGroup, "load", counted)
    monkeypatch.setattr(row_groups_module, "MAX_KEYS", 5)
    # Batches of 4 events: the group passes 5 keys at the second one (8 orders created).
    monkeypatch.setattr(rebuild_module, "replay_many", partial(replay_many, batch_size=4))
    model = OrderModel()
    with Engine.open(tmp_path, durability="async", clock=StepClock()) as engine:
        # 12 orders created, then items added to each of them, then some shipped.
        creates = [(0, i, i % 3, i % 4, 1, 0) for i in range(12)]
        adds = [(1, i, 0, (i + 1) % 4, 2, 0) for i in range(12)]
        ships = [(3, i, 0, 0, 1, 0) for i in range(0, 12, 3)]
        run_steps(engine, model, [*creates, *adds, *ships])
        probes = model.probes()
        live = answers(engine, probes, after=model.head)
        report = engine.rebuild()
        assert report.events == model.head
        assert answers(engine, probes) == live
        assert engine.status().parked_events == 0
    # One group (the order views share their fold), loaded at position 8 with 8 orders: the
    # rest of the log went event by event.
    assert loads == [8]


def test_only_empty_views_sharing_a_fold_are_grouped() -> None:
    views: list[View] = list(order_views(None))
    groups = row_groups(views)
    assert [[view.name for view in group.views] for group in groups] == [list(VIEW_NAMES)]
    views[0].apply([], 5)  # a view already past 0 keeps its rows: it is fed event by event
    assert [[view.name for view in group.views] for group in row_groups(views)] == [
        list(VIEW_NAMES[1:])
    ]


class _Plain:
    """A read model without a row fold."""

    name = "plain"
    tags: frozenset[str] | None = None
    query_types: tuple[type, ...] = (int,)

    def apply(self, storage: Any, record: Any) -> None:
        """Keep nothing."""

    def query(self, storage: Any, query: object) -> object:  # noqa: ARG002 - answers nothing
        """Answer nothing."""
        return None


def test_views_that_skip_undecodable_records_are_not_grouped_with_views_that_stall() -> None:
    skipping = order_views(None, skip_unknown=True)
    stalling = order_views(None)
    groups = row_groups([*skipping[:2], *stalling[2:]])
    assert sorted([view.skip_unknown for view in group.views] for group in groups) == [
        [False, False],
        [True, True],
    ]


def test_views_of_models_without_a_fold_are_not_grouped() -> None:
    assert row_groups([MemoryView(_Plain())]) == []
