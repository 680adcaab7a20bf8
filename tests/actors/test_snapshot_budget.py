"""Background snapshots of memory views: due every ``every`` events, within a share of the time."""

from pathlib import Path

import pytest
from readside_kit import WrappedView
from waiting import wait_until

from actors._snapshots import ViewSnapshots
from views import View
from views._chunked import Parts
from views._memory import MemoryView
from views._snapshot_file import read_snapshot_file
from views.orders import OrderStatsModel


class ManualClock:
    """Monotonic seconds that move only when the test (or a slow snapshot) moves them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowSnapshotView(WrappedView):
    """A real memory view whose snapshots take ``cost`` seconds on ``clock``."""

    def __init__(self, inner: MemoryView, clock: ManualClock, cost: float) -> None:
        super().__init__(inner)
        self.memory = inner
        self.clock = clock
        self.cost = cost
        self.fail = False

    def snapshot_parts(self) -> tuple[int, Parts]:
        self.clock.now += self.cost
        if self.fail:
            raise RuntimeError("injected snapshot failure")
        return self.memory.snapshot_parts()

    def restore(self, data: bytes) -> int | None:
        return self.memory.restore(data)


def _rig(
    tmp_path: Path, cost: float, budget: float = 0.25
) -> tuple[SlowSnapshotView, ViewSnapshots, ManualClock]:
    clock = ManualClock()
    view = SlowSnapshotView(MemoryView(OrderStatsModel()), clock, cost)
    views: list[View] = [view]
    snapshots = ViewSnapshots(tmp_path, views, every=100, budget=budget, clock=clock)
    return view, snapshots, clock


def _advance(view: SlowSnapshotView, snapshots: ViewSnapshots, to: int) -> None:
    """Move the view to ``to`` (no events, only its position) and tell the scheduler."""
    view.memory.apply([], to)
    snapshots.on_batch({view.name: to})


def _idle(snapshots: ViewSnapshots) -> bool:
    worker = snapshots._worker
    return worker is None or not worker.is_alive()


def test_a_snapshot_is_written_once_every_events_have_been_applied(tmp_path: Path) -> None:
    view, snapshots, _ = _rig(tmp_path, cost=0.0)
    _advance(view, snapshots, 99)
    assert wait_until(lambda: _idle(snapshots))
    assert snapshots.written == 0
    _advance(view, snapshots, 100)
    assert wait_until(lambda: snapshots.written == 1)
    assert read_snapshot_file(tmp_path, view.name) is not None


def test_after_a_slow_snapshot_the_next_waits_until_it_is_a_budget_share_of_the_time(
    tmp_path: Path,
) -> None:
    # A 2 s snapshot with a 25% budget: the next one waits 6 s more, whatever the events.
    view, snapshots, clock = _rig(tmp_path, cost=2.0, budget=0.25)
    _advance(view, snapshots, 100)
    assert wait_until(lambda: snapshots.written == 1)
    assert wait_until(lambda: _idle(snapshots))
    clock.now += 5.9
    _advance(view, snapshots, 1_000)
    assert wait_until(lambda: _idle(snapshots))
    assert snapshots.written == 1
    clock.now += 0.1
    _advance(view, snapshots, 1_001)
    assert wait_until(lambda: snapshots.written == 2)


def test_a_failing_snapshot_pauses_too_and_close_still_snapshots(tmp_path: Path) -> None:
    view, snapshots, clock = _rig(tmp_path, cost=1.0, budget=0.5)
    view.fail = True
    _advance(view, snapshots, 100)
    assert wait_until(lambda: _idle(snapshots))
    attempted = clock.now
    _advance(view, snapshots, 200)  # within the pause: not even tried (the clock did not move)
    assert wait_until(lambda: _idle(snapshots))
    assert clock.now == attempted
    view.fail = False
    snapshots.close(timeout=10)  # at close the budget does not apply: the state is kept
    assert snapshots.written == 1
    restored = MemoryView(OrderStatsModel())
    data = read_snapshot_file(tmp_path, view.name)
    assert data is not None
    assert restored.restore(data) == 200


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5])
def test_a_budget_outside_0_to_1_is_refused(tmp_path: Path, budget: float) -> None:
    with pytest.raises(ValueError, match="budget"):
        ViewSnapshots(tmp_path, [], every=100, budget=budget)
