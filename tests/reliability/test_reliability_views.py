"""The read pipeline under faults: a damaged views environment, an older layout, crashes, a views
environment that fails for a while, a corrupt record met by the views.

The log is the truth: whatever happens to the views environment, the engine detects it, rebuilds
the views from the log, says so in ``status()``, and answers exactly as the log says. A views
environment that fails for a while costs the views time, never events: they are retried until it
works again. A corrupt record stalls the views that meet it until ``retry_view``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb
from reliability_kit import (
    check_log,
    check_views_match_rebuild,
    command_for,
    command_id,
    write_orders,
)
from structlog.testing import capture_logs
from waiting import wait_until

from actors import Engine
from domain.orders import ORDERS
from store import Codec, EventStore, ViewStore
from store._viewstore import MARKER
from views.orders import GetOrderById, GetOrderStats, order_views

WAIT = 60.0

T = TypeVar("T")


def _log_with_views(path: Path, orders: int) -> int:
    """Write a log, let the default views catch up on it, close; return the head."""
    with EventStore.open(path, codec=Codec(ORDERS.event_types)) as store:
        head = write_orders(store, "v", orders)
    with Engine.open(path) as engine:
        assert engine.wait_for_views(head, timeout=WAIT)
    return head


def test_a_damaged_views_file_is_rebuilt_from_the_log_and_status_says_so(tmp_path: Path) -> None:
    path = tmp_path / "data"
    head = _log_with_views(path, 40)
    views_file = path / "views" / "data.mdb"
    views_file.write_bytes(b"\x00" * views_file.stat().st_size)
    with capture_logs() as logs, Engine.open(path) as engine:
        status = engine.status()
        assert status.views_recovered.startswith("unreadable")
        assert status.head == head  # the log itself is untouched
        model = check_log(engine.store)
        check_views_match_rebuild(engine, model)
    assert any(entry["event"] == "views_store_rebuilt" for entry in logs)
    with Engine.open(path) as engine:  # and the next open trusts the rebuilt views again
        assert engine.status().views_recovered == ""


def test_views_left_dirty_by_an_os_crash_are_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "data"
    _log_with_views(path, 20)
    # What an OS crash leaves: a dirty marker from another boot.
    (path / "views" / MARKER).write_text("boot-before-the-crash dirty\n", encoding="ascii")
    with Engine.open(path) as engine:
        assert "machine restarted" in engine.status().views_recovered
        check_views_match_rebuild(engine, check_log(engine.store))


def test_views_ahead_of_a_log_that_lost_commits_are_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "data"
    other = tmp_path / "other"
    _log_with_views(path, 30)
    # A log that lost its last commits (async durability, OS crash) under views that saw them:
    # the same views over a shorter log.
    with EventStore.open(other, codec=Codec(ORDERS.event_types)) as store:
        write_orders(store, "v", 10)
    (path / "views").rename(other / "views")
    with Engine.open(other) as engine:
        assert "ahead of the log" in engine.status().views_recovered
        check_views_match_rebuild(engine, check_log(engine.store))


def test_a_data_directory_of_the_older_layout_opens_and_drops_its_old_view_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types)) as store:
        write_orders(store, "old", 15)
        # What the older layout kept in the log's environment: view slots and checkpoints.
        db = store.open_db("view:order_details:0")
        store.write(lambda txn: txn.put(b"t\x00stale", b"junk", db=db))
        store.set_checkpoint("order_details", 3)
    with capture_logs() as logs, Engine.open(path) as engine:
        check_views_match_rebuild(engine, check_log(engine.store))
        assert engine.store.checkpoints() == {}
    assert any(entry["event"] == "legacy_views_dropped" for entry in logs)


class FlakyViewStore(ViewStore):
    """The real views environment, whose write transactions fail while ``failing`` is set.

    A failed write raises before anything is written, as an LMDB commit that hit an I/O error.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = threading.Event()
        self.failures = 0

    def write(self, fn: Callable[[Any], T]) -> T:
        """Fail while ``failing`` is set, else write."""
        if self.failing.is_set():
            self.failures += 1
            raise lmdb.DiskError("mdb_txn_commit: Input/output error (injected)")
        return super().write(fn)


def test_a_views_environment_failing_for_a_while_costs_time_not_events(tmp_path: Path) -> None:
    path = tmp_path / "data"
    lmdb_views = ("order_details", "customer_orders")
    store = FlakyViewStore.open(tmp_path / "flaky-views")
    assert isinstance(store, FlakyViewStore)
    try:
        with capture_logs() as logs, Engine.open(path, views=order_views(store)) as engine:
            first = engine.execute(command_for(command_id("f", 0, 0, 0)))
            assert engine.wait_for_views(first.position, timeout=WAIT)
            store.failing.set()
            before = time.time()
            second = engine.execute(command_for(command_id("f", 0, 1, 0)))
            with ThreadPoolExecutor(1) as pool:
                # A read-your-writes query (what GET /orders/{id} does) waits meanwhile.
                waiting = pool.submit(
                    engine.query, GetOrderById(second.aggregate_id), after=second.position
                )

                def failed_thrice() -> bool:
                    views = engine.status().views
                    return all(views[name].attempts >= 3 for name in lmdb_views)

                assert wait_until(failed_thrice)
                status = engine.status()
                for name in lmdb_views:
                    view = status.views[name]
                    assert view.state == "retrying"
                    assert view.error.startswith("DiskError: mdb_txn_commit: Input/output error")
                    assert before <= view.failing_since <= time.time()
                    assert view.retry_delay >= 0.05  # the first delay, or more
                    assert view.position == first.position
                # The memory views, on the same projector, are current.
                stats = engine.query(GetOrderStats(), after=second.position, timeout=WAIT)
                assert stats.total_orders == 2
                assert status.views["order_stats"].state == "ok"
                assert not waiting.done()
                store.failing.clear()
                answer = waiting.result(timeout=WAIT)
            assert answer is not None
            assert answer.order_id == second.aggregate_id
            assert engine.wait_for_views(timeout=WAIT)
            # Cleared just after the apply that succeeded (not atomically with it): wait for it.
            assert wait_until(lambda: all(v.state == "ok" for v in engine.status().views.values()))
            for view in engine.status().views.values():
                assert (view.state, view.error, view.attempts) == ("ok", "", 0)
                assert (view.failing_since, view.retry_delay) == (0.0, 0.0)
            assert engine.parked() == []  # a failing environment parks no event
            check_views_match_rebuild(engine, check_log(engine.store))
    finally:
        store.close()
    for name in lmdb_views:
        retries = [e for e in logs if e["event"] == "view_retrying" and e["view"] == name]
        assert len(retries) >= 3
        assert [e["attempts"] for e in retries] == list(range(1, len(retries) + 1))
        recovered = [e for e in logs if e["event"] == "view_recovered" and e["view"] == name]
        assert [e["attempts"] for e in recovered] == [len(retries)]
    assert not any(e["event"] == "view_stalled" for e in logs)


MEMORY_VIEWS = ("order_search", "order_stats")  # replayed from 0 at open: they meet the record


def _corrupt_a_record(path: Path) -> tuple[int, bytes]:
    """Write orders, then garble one record below the views' checkpoints; return it and its bytes.

    The memory views replay from 0 at the next open (their snapshots are removed), so they meet
    it; the LMDB views resume past it.
    """
    with Engine.open(path) as engine:
        results = [engine.execute(command_for(command_id("c", 0, n, 0))) for n in range(4)]
        assert engine.wait_for_views(timeout=WAIT)
    bad = results[1].position
    env = lmdb.open(str(path), max_dbs=256, subdir=True)
    try:
        log_db = env.open_db(b"log")  # the log table's name, from store/_store.py (_TABLES)
        with env.begin(write=True) as txn:
            original = txn.get(bad.to_bytes(8, "big"), db=log_db)
            assert original is not None
            garbled = bytearray(original)
            garbled[1:9] = b"\xc1" * 8  # 0xc1 is never valid msgpack
            txn.put(bad.to_bytes(8, "big"), bytes(garbled), db=log_db)
    finally:
        env.close()
    shutil.rmtree(path / "views" / "snapshots")
    return bad, original


def test_a_corrupt_record_stops_its_views_until_retry_view_and_a_fixed_one_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    bad, original = _corrupt_a_record(path)
    with capture_logs() as logs, Engine.open(path) as engine:

        def stalls(name: str) -> int:
            return sum(e["event"] == "view_stalled" and e["view"] == name for e in list(logs))

        assert wait_until(lambda: all(stalls(name) == 1 for name in MEMORY_VIEWS))
        status = engine.status()
        errors = {}
        for name in MEMORY_VIEWS:
            view = status.views[name]
            assert view.state == "stalled"
            assert view.error.startswith("CorruptLog: ")
            assert f"position {bad}" in view.error
            assert (view.attempts, view.retry_delay, view.position) == (1, 0.0, bad - 1)
            assert view.failing_since > 0
            errors[name] = view.error
        # Not retried by itself: new commits wake the projector, the LMDB views take them, the
        # stalled views stay where they are.
        later = engine.execute(command_for(command_id("c", 0, 9, 0)))
        found = engine.query(GetOrderById(later.aggregate_id), after=later.position, timeout=WAIT)
        assert found is not None
        # Each view is told to the router once it applied the batch: customer_orders gets
        # there on its own, right after order_details.
        assert wait_until(
            lambda: engine.status().views["customer_orders"].position == later.position
        )
        for name in MEMORY_VIEWS:
            view = engine.status().views[name]
            assert (view.state, view.attempts, view.position) == ("stalled", 1, bad - 1)
            assert stalls(name) == 1
        assert not any(e["event"] == "view_retrying" for e in logs)
        # Retried while the record is still corrupt: it stops again, with the same error.
        engine.retry_view("order_search")
        assert wait_until(lambda: stalls("order_search") == 2)
        view = engine.status().views["order_search"]
        assert (view.state, view.position) == ("stalled", bad - 1)
        assert view.error == errors["order_search"]
        # The record fixed (its bytes put back), retry_view resumes each view from where it stood.
        log_db = engine.store._dbs["log"]
        engine.store.write(lambda txn: txn.put(bad.to_bytes(8, "big"), original, db=log_db))
        for name in MEMORY_VIEWS:
            engine.retry_view(name)
        assert engine.wait_for_views(timeout=WAIT)
        for view in engine.status().views.values():
            # retry_view cleared it before the view tried again; no failure since.
            assert (view.state, view.error, view.attempts, view.failing_since) == ("ok", "", 0, 0.0)
        check_views_match_rebuild(engine, check_log(engine.store))
    assert {e["view"] for e in logs if e["event"] == "view_retry_requested"} == set(MEMORY_VIEWS)
