"""Followers: reading an LMDB environment that another process writes and grows.

The writer is a real child process (LMDB allows one handle per environment and process); it
grows a tiny map many times while this process reads, as a projection process does to the views
environment the engine reads, and as the engine does to the log its projection process follows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from structlog.testing import capture_logs

from store import ReadOnlyEnv, ViewStore

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from store import ViewStore
store = ViewStore.attach(sys.argv[1])
db = store.open_db("view:grow")
for batch in range(int(sys.argv[2])):
    def put(txn, batch=batch):
        for i in range(100):
            txn.put(f"{batch:05d}-{i:03d}".encode(), b"x" * 900, db=db)
        store.set_checkpoint("grow", batch + 1, txn)
    store.write(put)
store.close()
print("DONE", flush=True)
"""


def grow_in_another_process(path: Path, batches: int) -> None:
    """Run the writer child to completion (it grows the map from 64 KiB)."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", WRITER, str(path), str(batches)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "DONE", done.stderr


def test_a_store_adopts_the_map_another_process_grew(tmp_path: Path) -> None:
    path = tmp_path / "views"
    with ViewStore.open(path, map_size=64 * 1024) as store:
        db = store.open_db("view:grow")
        assert store.map_size == 64 * 1024
        grow_in_another_process(path, 40)  # ~3.6 MiB of rows
        with capture_logs() as logs:
            count = store.read(lambda txn: txn.stat(db)["entries"])
        assert [entry["event"] for entry in logs] == ["map_adopted"]
        assert count == 4000
        assert store.checkpoint("grow") == 40
        assert store.map_size > 64 * 1024


def test_a_follower_adopts_the_map_its_writer_grew(tmp_path: Path) -> None:
    path = tmp_path / "views"
    ViewStore.open(path, map_size=64 * 1024).close()
    follower = ReadOnlyEnv(path)
    try:
        assert follower.checkpoint("grow") == 0
        assert follower.db("view:grow") is None  # not created yet: None, not an error
        # ~13.5 MiB: beyond the 10 MiB a read-only environment maps by default.
        grow_in_another_process(path, 150)
        with capture_logs() as logs:
            db = follower.db("view:grow")
            assert db is not None
            assert follower.read(lambda txn: txn.stat(db)["entries"]) == 15000
        assert "follower_map_adopted" in [entry["event"] for entry in logs]
        assert follower.checkpoint("grow") == 150
    finally:
        follower.close()
