"""Crashes: real child processes SIGKILLed at random moments, then the data directory reopened.

Faults covered: kill -9 under write load (sync and async durability), kill -9 while the views
catch up on a large log (event by event, and loading the rows folded from 0), duplicate commands
re-sent after a crash, and reader slots of killed processes.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from reliability_kit import (
    THREADS,
    Ack,
    Child,
    check_acks,
    check_log,
    check_views_match_rebuild,
    command_for,
    read_acks,
    write_orders,
)

from actors import Engine
from domain.orders import ORDERS
from store import Codec, EventStore, ViewStore
from views.orders import GetOrderStats

ALL_LMDB = dict.fromkeys(
    ("order_details", "customer_orders", "order_search", "order_stats"), "lmdb"
)


def crash_round(path: Path, tag: str, durability: str, acks_before_kill: int) -> list[Ack]:
    """Run a writing child, SIGKILL it after ``acks_before_kill`` ACKs; return the ACKs read."""
    with Child("write", str(path), durability, tag, str(THREADS)) as child:
        child.expect("READY")
        acks = read_acks(child, acks_before_kill)
        child.kill()
    return acks


def reopen_and_check(path: Path, acks: list[Ack]) -> None:
    """Reopen after a crash: nothing acknowledged lost, log sound, views equal a rebuild."""
    with Engine.open(path) as engine:
        check_acks(engine.store, acks)
        model = check_log(engine.store)
        check_views_match_rebuild(engine, model)
        # The engine keeps serving after the crash, on top of what survived.
        for ack in acks[-3:]:
            assert engine.execute(command_for(ack.command_id)).position == ack.position


def test_acknowledged_commands_survive_kill_minus_nine_under_load(tmp_path: Path) -> None:
    rng = random.Random(os.getpid())
    path = tmp_path / "data"
    everything: list[Ack] = []
    for round_no, durability in enumerate(("sync", "sync", "async")):
        acks = crash_round(path, f"r{round_no}", durability, rng.randint(20, 600))
        everything.extend(acks)
        reopen_and_check(path, everything)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_acknowledged_commands_survive_many_random_kills(tmp_path: Path) -> None:
    rng = random.Random()
    path = tmp_path / "data"
    everything: list[Ack] = []
    for round_no in range(30):
        durability = rng.choice(("sync", "async"))
        acks = crash_round(path, f"s{round_no}", durability, rng.randint(1, 3000))
        everything.extend(acks)
        reopen_and_check(path, everything)


def test_lmdb_views_resume_from_their_checkpoint_after_a_kill_mid_catch_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        first = write_orders(store, "small", 100)
    # The views hold rows first (views at 0 fold the whole log and load it at once, see the
    # next test): the big catch-up below then goes event by event, checkpoint by checkpoint.
    with Engine.open(path, view_backends=ALL_LMDB) as engine:  # type: ignore[arg-type]
        assert engine.wait_for_views(first, timeout=60)
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        head = write_orders(store, "big", 6000)
    with Child("project", str(path)) as child:
        child.expect("READY")
        while True:
            position, _ = map(int, child.expect("POS"))
            if first < position < head:
                break
        child.kill()
    with ViewStore.open(path / "views", head=head) as views:
        saved = views.checkpoint("order_stats")
        assert views.recovered == ""  # a process crash: the page cache kept every view write
    assert first < saved < head, "the kill must land while the views are catching up"
    with Engine.open(path, view_backends=ALL_LMDB) as engine:  # type: ignore[arg-type]
        # It resumes from its checkpoint: no replay from 0, so nothing is counted twice.
        assert engine.status().views["order_stats"].position >= saved
        model = check_log(engine.store)
        assert engine.wait_for_views(timeout=60)
        assert engine.query(GetOrderStats()) == model.stats()
        check_views_match_rebuild(engine, model)


def test_a_kill_while_views_load_their_folded_rows_skips_nothing_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    # Views at 0 catch up as a rebuild does: the log folded into rows, then each view writes
    # them with its checkpoint in one transaction. The child is killed with one view loaded
    # and the others blocked before theirs (a fault-injecting wrapper around the real load).
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        head = write_orders(store, "fold", 2000)
    with Child("foldkill", str(path)) as child:
        child.expect("READY")
        child.expect("BLOCKED")
        child.kill()
    with ViewStore.open(path / "views", head=head) as views:
        saved = sorted(views.checkpoint(name) for name in ALL_LMDB)
        assert views.recovered == ""
    assert saved == [0, 0, 0, head], "one view loaded, the others not yet"
    with Engine.open(path, view_backends=ALL_LMDB) as engine:  # type: ignore[arg-type]
        positions = sorted(view.position for view in engine.status().views.values())
        assert positions[-1] == head  # the loaded view resumes at the head: no second fold
        model = check_log(engine.store)
        assert engine.wait_for_views(timeout=60)
        assert engine.query(GetOrderStats()) == model.stats()
        check_views_match_rebuild(engine, model)


def test_a_command_resent_after_a_crash_has_exactly_one_effect(tmp_path: Path) -> None:
    path = tmp_path / "data"
    acks = crash_round(path, "dup", "sync", 150)
    with Engine.open(path) as engine:
        head = engine.store.head()
        for ack in acks:
            # Rebuilt from its id alone: the very same command (same fingerprint).
            result = engine.execute(command_for(ack.command_id))
            assert (result.aggregate_id, result.version, result.position) == (
                ack.aggregate_id,
                ack.version,
                ack.position,
            )
        assert engine.store.head() == head
        model = check_log(engine.store)
        ids = [event.command_id for event in model.events]
        assert len(ids) == len(set(ids))


def test_reader_slots_of_a_killed_process_are_cleared_at_open(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with Engine.open(path) as engine:
        engine.execute(command_for("slot.0.0.0"))
    # Another process keeps the environment open, so LMDB does not reset its reader table
    # and the dead reader's slot really stays behind.
    with Child("holdenv", str(path)) as keeper:
        keeper.expect("READY")
        with Child("reader", str(path)) as reader:
            (dead,) = map(int, reader.expect("READING"))
            reader.kill()
        with Engine.open(path) as engine:
            assert engine.store.stale_readers_cleared >= 1
            slots = engine.store.env.readers().split("\n")[1:]
            assert all(line.split()[:1] != [str(dead)] for line in slots)
            assert engine.execute(command_for("slot.0.0.1")).version == 2


def test_a_kill_during_a_rebuild_skips_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        head = write_orders(store, "big", 4000)
    with Child("rebuild", str(path)) as child:
        child.expect("READY", timeout=120)
        while True:
            done, total = map(int, child.expect("PROG", timeout=120))
            if 0 < done < total:
                break
        child.kill()
    with Engine.open(path) as engine:
        # The interrupted rebuild's half-built copies are gone or ignored: every view, LMDB or
        # memory, is exact against a model folded from the log, and equals a fresh rebuild.
        model = check_log(engine.store)
        assert engine.store.head() == head
        assert engine.wait_for_views(timeout=60)
        assert engine.query(GetOrderStats()) == model.stats()
        check_views_match_rebuild(engine, model)


@pytest.mark.parametrize("stage", ["write", "fsync", "dirsync"])
def test_a_kill_during_a_view_snapshot_skips_nothing_and_applies_nothing_twice(
    tmp_path: Path, stage: str
) -> None:
    path = tmp_path / "data"
    with EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async") as store:
        write_orders(store, "big", 3000)
    acks: list[Ack] = []
    for attempt, rounds in enumerate((3, 1)):
        # The child stops inside a real snapshot write, at the stage under test, and is killed
        # there: the kill lands mid-snapshot every time (a random moment missed it under load).
        with Child("snapshot", str(path), f"snap{attempt}", str(rounds), stage) as child:
            child.expect("READY", timeout=120)
            acks.extend(read_acks(child, rounds + 1))
            assert child.expect("STALL", timeout=60) == [stage]
            child.kill()
        # Before the rename, the temporary file is left behind (torn or whole but unnamed);
        # after it, only the new snapshot is there.
        leftovers = list((path / "views" / "snapshots").glob("*.tmp"))
        assert bool(leftovers) == (stage != "dirsync")
    with Engine.open(path) as engine:
        # The memory views load whichever snapshot survived whole (a torn one is discarded)
        # and replay only the tail after it: exact against the log, equal to a rebuild.
        check_acks(engine.store, acks)
        model = check_log(engine.store)
        assert engine.wait_for_views(timeout=60)
        assert engine.query(GetOrderStats()) == model.stats()
        check_views_match_rebuild(engine, model)
