"""Hot backups under write load: restoring one finds everything acknowledged before it started.

Two ways: ``Engine.backup`` while a thread of the same process keeps writing, and ``python
main.py backup`` (another process) while a child process keeps writing. Each backup is opened
with ``Engine.open``: every acknowledged command is there as acknowledged, the log is gap-free
with whole commands, and the views (caught up from the backup's checkpoints and snapshots)
equal a rebuild from its log.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from child_process import REPO
from reliability_kit import (
    STEPS,
    THREADS,
    Ack,
    Child,
    check_acks,
    check_log,
    check_views_match_rebuild,
    command_for,
    command_id,
    read_acks,
)

from actors import CommandResult, Engine

TIMEOUT = 60.0


def restore_and_check(backup: Path, acks: list[Ack]) -> None:
    assert acks, "the writer acknowledged nothing before the backup"
    with Engine.open(backup, durability="async") as engine:
        check_acks(engine.store, acks)
        model = check_log(engine.store)
        check_views_match_rebuild(engine, model)


def test_engine_backup_while_a_thread_writes_restores_everything_acknowledged_before(
    tmp_path: Path,
) -> None:
    path, backup = tmp_path / "data", tmp_path / "backup"
    acked: list[Ack] = []
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def record(cid: str, result: CommandResult) -> None:
        with lock:
            acked.append(Ack(cid, result.aggregate_id, result.version, result.position))

    def write(engine: Engine) -> None:
        try:
            order = 0
            while not stop.is_set():
                futures = []
                for step in range(STEPS):
                    cid = command_id("t", 0, order, step)
                    futures.append((cid, engine.submit(command_for(cid))))
                for cid, future in futures:
                    record(cid, future.get(timeout=TIMEOUT))
                order += 1
        except BaseException as error:  # reported by the test below
            failures.append(error)

    with Engine.open(path, durability="async") as engine:
        writer = threading.Thread(target=write, args=(engine,), name="backup-writer")
        writer.start()
        try:
            wait_for_acks(acked, lock, 200)
            with lock:
                before = list(acked)
            report = engine.backup(backup)
            count = len(before)
            wait_for_acks(acked, lock, count + 50)  # it kept writing meanwhile
        finally:
            stop.set()
            writer.join(TIMEOUT)
        assert not writer.is_alive()
        assert not failures, failures
    assert report.dest == str(backup)
    restore_and_check(backup, before)


def wait_for_acks(acked: list[Ack], lock: threading.Lock, count: int) -> None:
    """Wait (polling, with a deadline) until ``count`` commands are acknowledged."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        with lock:
            if len(acked) >= count:
                return
        assert time.monotonic() < deadline, f"fewer than {count} acks within {TIMEOUT} s"
        threading.Event().wait(0.005)  # polling interval, not synchronisation


def test_cli_backup_of_a_directory_another_process_writes_to(tmp_path: Path) -> None:
    path, backup = tmp_path / "data", tmp_path / "backup"
    with Child("write", str(path), "sync", "b", str(THREADS)) as child:
        child.expect("READY")
        before = read_acks(child, 300)
        result = subprocess.run(  # noqa: S603 - our own interpreter running our own CLI
            [sys.executable, str(REPO / "main.py"), "backup", str(backup), "--data", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=REPO,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"backed up {path} to {backup}" in result.stdout
        read_acks(child, 50)  # the writer went on while the backup ran, and after
        child.kill()
    restore_and_check(backup, before)
