"""The views environment: apart from the log, unflushed writes tracked, damage detected at open."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from store import ViewStore
from store._viewstore import MARKER, boot_id


def _marker(path: Path) -> str:
    return (path / MARKER).read_text(encoding="ascii").strip()


def _write_checkpoint(path: Path, name: str, position: int) -> None:
    with ViewStore.open(path) as views:
        views.set_checkpoint(name, position)


def test_a_write_marks_the_environment_dirty_until_it_is_flushed(tmp_path: Path) -> None:
    with ViewStore.open(tmp_path) as views:
        assert _marker(tmp_path) == f"{boot_id()} clean"
        views.set_checkpoint("v", 3)
        assert _marker(tmp_path) == f"{boot_id()} dirty"
        assert not views.sync_if_due()  # the interval has not passed yet
        assert views.sync_if_due(force=True)
        assert _marker(tmp_path) == f"{boot_id()} clean"
        assert not views.sync_if_due(force=True)  # nothing left to flush
        views.set_checkpoint("v", 4)
    assert _marker(tmp_path) == f"{boot_id()} clean"  # close flushes
    with ViewStore.open(tmp_path, head=4) as views:
        assert views.recovered == ""
        assert views.checkpoint("v") == 4


def test_a_process_crash_with_unflushed_writes_is_trusted(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, "v", 9)
    # Same boot, dirty: the page cache survived the process, so LMDB's state is whole.
    (tmp_path / MARKER).write_text(f"{boot_id()} dirty\n", encoding="ascii")
    with ViewStore.open(tmp_path, head=9) as views:
        assert views.recovered == ""
        assert views.checkpoint("v") == 9


def test_an_os_crash_with_unflushed_writes_wipes_the_environment(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, "v", 9)
    (tmp_path / MARKER).write_text("another-boot dirty\n", encoding="ascii")
    with capture_logs() as logs, ViewStore.open(tmp_path, head=9) as views:
        assert "machine restarted" in views.recovered
        assert views.checkpoint("v") == 0  # rebuilt from the log by the projectors
    assert any(entry["event"] == "views_store_rebuilt" for entry in logs)


def test_an_os_crash_after_a_flush_keeps_the_views(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, "v", 9)
    (tmp_path / MARKER).write_text("another-boot clean\n", encoding="ascii")
    with ViewStore.open(tmp_path, head=9) as views:
        assert views.recovered == ""
        assert views.checkpoint("v") == 9


def test_a_damaged_file_is_detected_and_the_environment_wiped(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, "v", 9)
    data = tmp_path / "data.mdb"
    size = data.stat().st_size
    data.write_bytes(b"\xa5" * size)  # both meta pages and every data page destroyed
    with ViewStore.open(tmp_path, head=9) as views:
        assert views.recovered.startswith("unreadable")
        assert views.checkpoint("v") == 0
        views.set_checkpoint("v", 1)  # and it works again
        assert views.checkpoint("v") == 1


def test_checkpoints_ahead_of_the_log_wipe_the_environment(tmp_path: Path) -> None:
    _write_checkpoint(tmp_path, "v", 50)
    with ViewStore.open(tmp_path, head=40) as views:
        assert "ahead of the log" in views.recovered
        assert "v=50" in views.recovered
        assert views.checkpoints() == {}


def test_closing_twice_is_harmless_and_later_use_raises(tmp_path: Path) -> None:
    views = ViewStore.open(tmp_path)
    views.close()
    views.close()
    with pytest.raises(Exception, match="closed"):
        views.checkpoint("v")
