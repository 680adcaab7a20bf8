"""kill -9 in the middle of the saga's flows: a real child process, SIGKILLed, then reopened.

Each round runs ``saga_child.py`` (the whole example shop) on the same data directory and
SIGKILLs it once its saga has issued a random number of commands: the saga is then somewhere
between submitting commands, their commit and its checkpoint's write. The parent finally
reopens the directory itself, re-sends every order (a client retries what it never saw
acknowledged) and checks that every flow completed exactly once: no order lost, none reserved,
confirmed or cancelled twice, and the stock agrees.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Final

from child_process import ChildProcess
from inventory_kit import TIMEOUT, all_events

from actors import Engine
from examples.inventory import (
    GetStockLevel,
    OrderCancelled,
    OrderConfirmed,
    PlaceOrder,
    ReservationFailed,
    StockLevel,
    StockReserved,
    inventory_options,
)

ORDERS: Final = 240
CHILD: Final = Path(__file__).resolve().with_name("saga_child.py")
ROUND_SECONDS: Final = 60.0  # a round takes well under a second; a stall fails with its story


def _story(why: str, last: str, errors: Path) -> str:
    """Return a failure message with the child's last line and the end of its log."""
    log_tail = errors.read_text(errors="replace")[-4000:]
    return f"{why}; last line {last!r}; child's stderr ends:\n{log_tail}"


def run_and_kill(path: Path, kill_after_issued: int, errors: Path) -> bool:
    """Run a child until its saga issued ``kill_after_issued`` commands (or settled), kill it.

    Args:
        path: The data directory.
        kill_after_issued: Kill once the child's saga has issued this many commands.
        errors: A file for the child's stderr (its log), quoted when the round fails.

    Returns:
        Whether it was killed mid-flow (before it reported ``DONE``).
    """
    deadline = time.monotonic() + ROUND_SECONDS
    with errors.open("w") as stderr:
        child = ChildProcess(CHILD, str(path), str(ORDERS), stderr=stderr)
    with child:  # SIGKILLed and reaped on the way out
        ready, last = False, ""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, _story(
                f"no kill point nor DONE within {ROUND_SECONDS} s", last, errors
            )
            try:
                line = child.line(left)
            except AssertionError as stalled:  # it exited, or printed nothing until the deadline
                raise AssertionError(_story(str(stalled), last, errors)) from None
            assert not line.startswith(("ERR", "STUCK")), _story(line, last, errors)
            last = line
            fields = line.split()
            if fields[0] == "READY":
                ready = True
            elif fields[0] == "DONE":
                return False
            elif fields[0] == "SAGA" and int(fields[2]) >= kill_after_issued:
                assert ready
                return True


def test_kill_minus_nine_mid_flow_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(os.getpid())
    path = tmp_path / "data"
    # Each round's child resumes from where the last one's saga stopped, and is killed again.
    mid_flow = [
        run_and_kill(path, rng.randint(10, 120), tmp_path / f"child-{round_}.err")
        for round_ in range(5)
    ]
    assert any(mid_flow)  # the kills did land in the middle of flows
    with Engine.open(path, durability="async", **inventory_options()) as engine:
        for number in range(ORDERS):  # the client re-sends what it may never have seen acked
            order_id = f"so-{number}"
            engine.submit(
                PlaceOrder(
                    order_id=order_id, sku="kettle", quantity=1, command_id=f"place-{order_id}"
                )
            ).get(timeout=TIMEOUT)
        assert engine.wait_for_sagas(30.0)
        events = all_events(engine.store)
        by_order: dict[str, Counter[str]] = {}
        for event in events:
            owner = getattr(event.event, "order_id", None)
            if owner is not None:
                by_order.setdefault(owner, Counter())[type(event.event).__name__] += 1
        assert len(by_order) == ORDERS
        confirmed = 0
        for order_id, kinds in by_order.items():
            assert kinds["OrderPlaced"] == 1, (order_id, kinds)
            reservations = kinds[StockReserved.__name__] + kinds[ReservationFailed.__name__]
            outcomes = kinds[OrderConfirmed.__name__] + kinds[OrderCancelled.__name__]
            assert (reservations, outcomes) == (1, 1), (order_id, kinds)
            assert kinds[StockReserved.__name__] == kinds[OrderConfirmed.__name__], kinds
            confirmed += kinds[OrderConfirmed.__name__]
        assert confirmed == ORDERS // 2  # exactly the stock there was
        saga_ids = Counter(e.command_id for e in events if e.command_id.startswith("fulfilment."))
        assert max(saga_ids.values()) == 1
        assert len(saga_ids) == 2 * ORDERS
        level = engine.query(GetStockLevel("kettle"), after=engine.store.head(), timeout=TIMEOUT)
        assert level == StockLevel("kettle", on_hand=ORDERS // 2, reserved=ORDERS // 2)
        status = engine.status().sagas["fulfilment"]
        assert (status.position, status.state) == (engine.store.head(), "ok")
