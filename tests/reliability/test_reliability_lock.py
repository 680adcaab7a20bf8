"""One engine per data directory: a second opener (another process, or this one) gets LogLocked
naming the holder, the holder is unharmed, and a lock left by a killed process is taken over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability_kit import Child, check_log, command_for, parse_ack
from structlog.testing import capture_logs

from actors import Engine, LogLocked


def test_a_second_process_gets_log_locked_with_our_pid_and_we_keep_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with Engine.open(path) as engine:
        engine.execute(command_for("lk.0.0.0"))
        with Child("tryopen", str(path)) as child:
            assert child.expect("LOCKED") == [str(os.getpid())]
            assert child.wait() == 0
        assert engine.execute(command_for("lk.0.0.1")).version == 2
        check_log(engine.store)


def test_opening_the_same_directory_twice_in_one_process_raises_log_locked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with Engine.open(path) as engine:
        engine.execute(command_for("tw.0.0.0"))
        with pytest.raises(LogLocked) as caught:
            Engine.open(path)
        assert caught.value.pid == os.getpid()
        assert str(os.getpid()) in str(caught.value)
        assert engine.execute(command_for("tw.0.0.1")).version == 2
    with Engine.open(path) as engine:  # the failed open left nothing behind
        assert engine.store.head() == 2


def test_we_get_log_locked_naming_the_holder_process_which_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Child("hold", str(path)) as holder:
        (pid,) = holder.expect("READY")
        assert int(pid) == holder.pid
        with pytest.raises(LogLocked) as caught:
            Engine.open(path)
        assert caught.value.pid == holder.pid
        assert pid in str(caught.value)
        holder.send("run hl.0.0.0")
        ack = parse_ack(holder.expect("ACK"))
        assert (ack.version, ack.position) == (1, 1)
        holder.send("exit")
        holder.expect("CLOSED")
        assert holder.wait() == 0
    with Engine.open(path) as engine:
        assert engine.store.lookup_command("hl.0.0.0") is not None


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Child("hold", str(path)) as holder:
        holder.expect("READY")
        holder.send("run st.0.0.0")
        holder.expect("ACK")
        holder.kill()
        dead = holder.pid
    with capture_logs() as logs, Engine.open(path) as engine:
        assert engine.execute(command_for("st.0.0.1")).version == 2
        assert (path / "engine.lock").read_text().strip() == str(os.getpid())
    taken = [entry for entry in logs if entry["event"] == "stale_lock_taken_over"]
    assert [entry["previous_pid"] for entry in taken] == [dead]
