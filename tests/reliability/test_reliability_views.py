"""The read pipeline under faults: a damaged views environment, an older layout, crashes.

The log is the truth: whatever happens to the views environment, the engine detects it, rebuilds
the views from the log, says so in ``status()``, and answers exactly as the log says.
"""

from __future__ import annotations

from pathlib import Path

from reliability_kit import check_log, check_views_match_rebuild, write_orders
from structlog.testing import capture_logs

from actors import Engine
from domain.orders import ORDERS
from store import Codec, EventStore
from store._viewstore import MARKER

WAIT = 60.0


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
