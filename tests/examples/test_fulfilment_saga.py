"""The fulfilment saga through a real Engine: flows end to end, restarts, failures, status."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from inventory_kit import TIMEOUT, all_events
from structlog.testing import capture_logs
from waiting import wait_until

from actors import Engine, InvalidSaga, saga_command_id
from actors._messages import AppendCommand
from examples.inventory import (
    FULFILMENT,
    OUT_OF_STOCK,
    CancelOrder,
    GetStockLevel,
    OrderCancelled,
    OrderConfirmed,
    PlaceOrder,
    ReceiveStock,
    ShipOrder,
    StockLevel,
    inventory_options,
)
from store import EventStore, RecordedEvent

SAGA: Final = "fulfilment"


@contextmanager
def shop(path: Path, **options: Any) -> Iterator[Engine]:
    """Open the whole example (deciders, view, codec, saga) with async durability."""
    settings = {**inventory_options(), "durability": "async", **options}
    engine = Engine.open(path, **settings)
    try:
        yield engine
    finally:
        engine.close()


def order_status(store: EventStore, order_id: str) -> list[str]:
    """Return the tags of a sales order's events, in order."""
    return [e.tag for e in store.read_stream(order_id, stream_type="sales_order")]


def assert_each_command_once(store: EventStore) -> list[RecordedEvent]:
    """Every saga command id caused one event at most; return the saga's events."""
    events = all_events(store)
    caused = [e for e in events if e.command_id.startswith(f"{SAGA}.")]
    counts = Counter(e.command_id for e in caused)
    assert max(counts.values(), default=0) == 1, counts.most_common(3)
    return caused


def test_the_saga_drives_orders_to_confirmed_or_cancelled_across_two_aggregate_types(
    tmp_path: Path,
) -> None:
    with shop(tmp_path / "data") as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=3))
        engine.execute(PlaceOrder(order_id="so-2", sku="kettle", quantity=3))
        assert engine.wait_for_sagas(TIMEOUT)
        assert order_status(engine.store, "so-1") == ["sales.OrderPlaced", "sales.OrderConfirmed"]
        assert order_status(engine.store, "so-2") == ["sales.OrderPlaced", "sales.OrderCancelled"]
        cancelled = engine.store.read_stream("so-2", stream_type="sales_order")[-1].event
        assert isinstance(cancelled, OrderCancelled)
        assert cancelled.reason == OUT_OF_STOCK
        # Shipping the confirmed order ships its stock; the saga takes it off the shelf.
        engine.execute(ShipOrder(order_id="so-1"))
        assert engine.wait_for_sagas(TIMEOUT)
        head = engine.store.head()
        level = engine.query(GetStockLevel("kettle"), after=head, timeout=TIMEOUT)
        assert level == StockLevel("kettle", on_hand=2, reserved=0)
        status = engine.status().sagas[SAGA]
        assert (status.position, status.lag_events, status.state) == (head, 0, "ok")
        # so-1: reserve, confirm, ship stock; so-2: reserve (failed), cancel.
        assert (status.issued, status.rejected) == (5, 0)
        assert_each_command_once(engine.store)


def test_each_command_id_names_the_saga_and_the_event_that_caused_it(tmp_path: Path) -> None:
    with shop(tmp_path / "data") as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        placed = engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        assert engine.wait_for_sagas(TIMEOUT)
        caused = assert_each_command_once(engine.store)
        reserved, confirmed = caused
        assert reserved.command_id == saga_command_id(SAGA, placed.position, 0)
        assert confirmed.command_id == saga_command_id(SAGA, reserved.position, 0)
        assert isinstance(confirmed.event, OrderConfirmed)


def test_a_confirmed_order_cancelled_later_releases_its_stock(tmp_path: Path) -> None:
    with shop(tmp_path / "data") as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=4))
        assert engine.wait_for_sagas(TIMEOUT)
        engine.execute(CancelOrder(order_id="so-1", reason="changed my mind"))
        assert engine.wait_for_sagas(TIMEOUT)
        level = engine.query(GetStockLevel("kettle"), after=engine.store.head(), timeout=TIMEOUT)
        assert level == StockLevel("kettle", on_hand=5, reserved=0)


def test_a_restart_resumes_from_the_checkpoint_and_a_replay_issues_nothing_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with shop(path) as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=10))
        for number in range(6):
            engine.execute(PlaceOrder(order_id=f"so-{number}", sku="kettle", quantity=2))
        assert engine.wait_for_sagas(TIMEOUT)
        head = engine.store.head()
    with shop(path) as engine:  # a clean restart: at the head at once, nothing issued
        assert engine.status().sagas[SAGA].position == head
        assert engine.wait_for_sagas(TIMEOUT)
        assert engine.store.head() == head
    # A crash after the commands' commit but before the checkpoint's, taken to the extreme:
    # the checkpoint is lost altogether, so the saga reacts to the whole log again.
    with EventStore.open(path, codec=inventory_options()["codec"]) as store:
        store.set_checkpoint(f"saga:{SAGA}", 0)
    with shop(path) as engine:
        assert engine.wait_for_sagas(TIMEOUT)
        assert engine.store.head() == head  # every re-issued id answered with its original
        status = engine.status().sagas[SAGA]
        assert (status.position, status.issued, status.rejected) == (head, 6 + 6, 0)
        assert_each_command_once(engine.store)


def test_a_close_mid_flow_and_a_reopen_complete_every_flow_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "data"
    orders = 40
    with shop(path) as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=orders // 2))
        for number in range(orders):
            engine.submit(PlaceOrder(order_id=f"so-{number}", sku="kettle", quantity=1))
        # Closed once the saga is under way: somewhere in the middle of the flows.
        wait_until(lambda: engine.status().sagas[SAGA].issued >= orders // 4)
    with shop(path) as engine:
        assert engine.wait_for_sagas(TIMEOUT)
        outcomes = Counter(
            order_status(engine.store, f"so-{number}")[-1] for number in range(orders)
        )
        assert outcomes == {
            "sales.OrderConfirmed": orders // 2,
            "sales.OrderCancelled": orders // 2,
        }
        level = engine.query(GetStockLevel("kettle"), after=engine.store.head(), timeout=TIMEOUT)
        assert level == StockLevel("kettle", on_hand=orders // 2, reserved=orders // 2)
        assert_each_command_once(engine.store)


def test_a_transient_failure_is_retried_with_backoff_and_shown_in_status(tmp_path: Path) -> None:
    failures = {"left": 3}
    lock = threading.Lock()

    def seam(kind: str, message: object) -> None:
        # The writer fails the saga's first appends (ActorFailed to the saga: transient).
        if kind != "writer" or not isinstance(message, AppendCommand):
            return
        if message.append.command_id.startswith(f"{SAGA}."):
            with lock:
                if failures["left"] > 0:
                    failures["left"] -= 1
                    raise RuntimeError("injected writer fault")

    with shop(tmp_path / "data", fault_seam=seam) as engine, capture_logs() as logs:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        assert engine.wait_for_sagas(TIMEOUT)
        assert order_status(engine.store, "so-1")[-1] == "sales.OrderConfirmed"
        status = engine.status().sagas[SAGA]
        assert (status.state, status.error, status.attempts) == ("ok", "", 0)
        assert_each_command_once(engine.store)
    retries = [entry for entry in logs if entry["event"] == "saga_retrying"]
    assert [entry["attempts"] for entry in retries] == [1, 2, 3]
    assert "ActorFailed" in retries[0]["error"]
    assert any(entry["event"] == "saga_recovered" for entry in logs)


class Flaky:
    """A saga whose ``react`` raises while ``broken`` is set (then behaves like fulfilment)."""

    name = "flaky"
    tags = FULFILMENT.tags

    def __init__(self) -> None:
        self.broken = threading.Event()
        self.broken.set()

    def react(self, record: RecordedEvent) -> Sequence[Any]:
        if self.broken.is_set():
            raise ValueError("react is broken")
        return FULFILMENT.react(record)


def test_a_failing_react_keeps_the_event_unanswered_and_status_shows_it(tmp_path: Path) -> None:
    flaky = Flaky()
    with shop(tmp_path / "data", sagas=[flaky]) as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        placed = engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        wait_until(lambda: engine.status().sagas["flaky"].attempts >= 2)
        status = engine.status().sagas["flaky"]
        assert status.state == "retrying"
        assert status.error == "ValueError: react is broken"
        assert status.position == placed.position - 1  # stopped before the order, not past it
        flaky.broken.clear()
        assert engine.wait_for_sagas(TIMEOUT)
        assert order_status(engine.store, "so-1")[-1] == "sales.OrderConfirmed"
        assert engine.status().sagas["flaky"].state == "ok"


class Stubborn:
    """A saga that confirms every placed order twice: the second is rejected every time."""

    name = "stubborn"
    tags = frozenset({"sales.OrderPlaced", "inventory.StockReserved"})

    def react(self, record: RecordedEvent) -> Sequence[Any]:
        from examples.inventory import ConfirmOrder, OrderPlaced  # noqa: PLC0415

        event = record.event
        if isinstance(event, OrderPlaced):
            return FULFILMENT.react(record)
        return [ConfirmOrder(order_id=event.order_id), ConfirmOrder(order_id=event.order_id)]  # type: ignore[attr-defined]


def test_a_rejected_command_counts_as_answered_and_is_logged(tmp_path: Path) -> None:
    with shop(tmp_path / "data", sagas=[Stubborn()]) as engine, capture_logs() as logs:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        assert engine.wait_for_sagas(TIMEOUT)
        status = engine.status().sagas["stubborn"]
        assert (status.issued, status.rejected, status.state) == (2, 1, "ok")
    rejected = [entry for entry in logs if entry["event"] == "saga_command_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["command_id"].endswith(".1")
    assert rejected[0]["rule"] == "order_not_placed"
    assert rejected[0]["error"].startswith("CommandRejected: the order is confirmed")


def test_a_failing_saga_actor_resumes_and_still_completes_the_flow(tmp_path: Path) -> None:
    failures = {"left": 3}

    def seam(kind: str, message: object) -> None:
        del message
        if kind == "saga" and failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("injected saga fault")

    with shop(tmp_path / "data", fault_seam=seam) as engine:
        engine.execute(ReceiveStock(sku="kettle", quantity=5))
        engine.execute(PlaceOrder(order_id="so-1", sku="kettle", quantity=1))
        assert engine.wait_for_sagas(TIMEOUT)
        assert order_status(engine.store, "so-1")[-1] == "sales.OrderConfirmed"
        assert failures["left"] == 0
        assert_each_command_once(engine.store)


@pytest.mark.parametrize(
    ("sagas", "match"),
    [
        ([object()], "name"),
        ([type("S", (), {"name": "a.b", "tags": None, "react": lambda _s, _r: []})()], "'.'"),
        ([type("S", (), {"name": "x" * 65, "tags": None, "react": lambda _s, _r: []})()], "64"),
        ([FULFILMENT, FULFILMENT], "two sagas"),
    ],
)
def test_sagas_the_engine_cannot_run_are_refused_at_open(
    tmp_path: Path, sagas: list[object], match: str
) -> None:
    path = tmp_path / "data"
    with pytest.raises(InvalidSaga, match=match), shop(path, sagas=sagas):
        pass
    with shop(path) as engine:  # nothing was left open
        assert engine.status().sagas[SAGA].position == 0
