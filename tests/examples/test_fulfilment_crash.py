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
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Final

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
REPO: Final = Path(__file__).resolve().parents[2]
CHILD: Final = Path(__file__).resolve().with_name("saga_child.py")
ROUND_SECONDS: Final = 60.0  # a round takes well under a second; a stall fails with its story


class _Lines:
    """A child's stdout, line by line, read by a thread, within one round's deadline."""

    def __init__(self, proc: subprocess.Popen[str], errors: Path) -> None:
        self._errors = errors
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._deadline = time.monotonic() + ROUND_SECONDS
        self.last = ""
        self.reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def failed(self, why: str) -> str:
        """Return a failure message with the last line and the end of the child's log."""
        log_tail = self._errors.read_text(errors="replace")[-4000:]
        return f"{why}; last line {self.last!r}; child's stderr ends:\n{log_tail}"

    def next(self) -> str | None:
        """Return the next line (None at the child's exit); fail at the round's deadline."""
        left = self._deadline - time.monotonic()
        assert left > 0, self.failed(f"no kill point nor DONE within {ROUND_SECONDS} s")
        try:
            line = self._lines.get(timeout=left)
        except queue.Empty:
            return self.next()
        if line is not None:
            assert not line.startswith(("ERR", "STUCK")), self.failed(line)
            self.last = line
        return line


def run_and_kill(path: Path, kill_after_issued: int, errors: Path) -> bool:
    """Run a child until its saga issued ``kill_after_issued`` commands (or settled), kill it.

    Args:
        path: The data directory.
        kill_after_issued: Kill once the child's saga has issued this many commands.
        errors: A file for the child's stderr (its log), quoted when the round fails.

    Returns:
        Whether it was killed mid-flow (before it reported ``DONE``).
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with errors.open("w") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own script with our own arguments
            [sys.executable, str(CHILD), str(path), str(ORDERS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env=env,
        )
    lines = _Lines(proc, errors)
    try:
        ready = False
        while (line := lines.next()) is not None:
            fields = line.split()
            if fields[0] == "READY":
                ready = True
            elif fields[0] == "DONE":
                return False
            elif fields[0] == "SAGA" and int(fields[2]) >= kill_after_issued:
                assert ready
                return True
        raise AssertionError(lines.failed(f"child exited early ({proc.poll()})"))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # The reader drains the dead child's pipe to EOF before it is closed: closing it while
        # the reader still iterates raises "I/O operation on closed file" in the reader's thread.
        lines.reader.join(timeout=30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


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
