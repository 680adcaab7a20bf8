from __future__ import annotations

import os
import pathlib
import queue
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from domain.errors import EngineError, LogLocked
from domain.orders import ORDERS, OrderItemAdded
from store import Codec, Committed, EventStore, StreamAppend

TIMEOUT = 60.0

_TRY_OPEN = """
import sys
from domain.errors import LogLocked
from store import Codec, EventStore
try:
    EventStore.open(sys.argv[1], codec=Codec())
except LogLocked as error:
    print(error.pid, error.path, sep="\\n")
    print(error)
    sys.exit(3)
print("opened")
"""

_HOLD = """
import sys
from decimal import Decimal
from domain.orders import ORDERS, OrderItemAdded
from store import Codec, EventStore, StreamAppend
store = EventStore.open(sys.argv[1], codec=Codec(ORDERS.event_types), durability="async")
event = OrderItemAdded(order_id="o", product_id="p", quantity=1, price=Decimal("1.00"))
store.append_batch([StreamAppend(stream_id="child", stream_type="order", expected_version=0,
                                 events=[event] * 3)])
txn = store.env.begin()  # a read transaction that will never end: a stale reader slot
txn.get(b"x")
print("ready", flush=True)
sys.stdin.read()
"""


def events(count: int, stream_id: str = "o") -> list[OrderItemAdded]:
    return [
        OrderItemAdded(order_id=stream_id, product_id=f"p{i}", quantity=1, price=Decimal("1.00"))
        for i in range(count)
    ]


_RAW_READER = """
import sys
import lmdb
env = lmdb.open(sys.argv[1], readonly=True, lock=True, max_dbs=8)
print("ready", flush=True)
sys.stdin.read()
"""


_pumps: dict[int, threading.Thread] = {}


def _start(code: str, path: pathlib.Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout = child.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    # A reader thread turns the blocking pipe into a queue we can wait on with a deadline.
    def pump() -> None:
        with stdout:
            for line in stdout:
                lines.put(line)

    _pumps[child.pid] = threading.Thread(target=pump, daemon=True)
    _pumps[child.pid].start()
    deadline = time.monotonic() + TIMEOUT
    while True:  # the child's log lines come first (structlog's default goes to stdout)
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        if line.strip() == "ready":
            return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.kill()  # SIGKILL: no cleanup runs, like a crash
    child.wait(timeout=TIMEOUT)
    assert child.stdin is not None
    child.stdin.close()
    pump = _pumps.pop(child.pid)
    pump.join(timeout=TIMEOUT)
    assert not pump.is_alive()


def test_a_second_process_gets_log_locked_with_our_pid(tmp_path: pathlib.Path) -> None:
    with EventStore.open(tmp_path, codec=Codec()):
        done = subprocess.run(  # noqa: S603 - our own interpreter running our own code
            [sys.executable, "-c", _TRY_OPEN, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 3, done.stderr
    pid, path, message = done.stdout.splitlines()[:3]
    assert int(pid) == os.getpid()
    assert path == str(tmp_path)
    assert f"process {os.getpid()}" in message


def test_opening_the_same_path_twice_in_one_process_is_log_locked(
    tmp_path: pathlib.Path,
) -> None:
    with EventStore.open(tmp_path, codec=Codec()):
        with pytest.raises(LogLocked) as caught:
            EventStore.open(tmp_path / "." / "", codec=Codec())
        assert caught.value.pid == os.getpid()
        assert str(os.getpid()) in str(caught.value)
    # Released on close: it opens again.
    EventStore.open(tmp_path, codec=Codec()).close()


def test_the_lock_file_holds_the_pid_and_is_released_on_close(tmp_path: pathlib.Path) -> None:
    store = EventStore.open(tmp_path, codec=Codec())
    lock_file = tmp_path / "engine.lock"
    assert lock_file.read_text().strip() == str(os.getpid())
    store.close()
    done = subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", _TRY_OPEN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.stdout.splitlines()[-1] == "opened", done.stderr


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path: pathlib.Path) -> None:
    child = _start(_HOLD, tmp_path)
    try:
        with pytest.raises(LogLocked) as caught:
            EventStore.open(tmp_path, codec=Codec())
        assert caught.value.pid == child.pid
    finally:
        _kill(child)
    assert (tmp_path / "engine.lock").read_text().strip() == str(child.pid)
    with (
        capture_logs() as logs,
        EventStore.open(tmp_path, codec=Codec(ORDERS.event_types)) as store,
    ):
        assert (tmp_path / "engine.lock").read_text().strip() == str(os.getpid())
        assert f"{child.pid}" not in store.env.readers()
        # What the child committed (async durability) survived its crash.
        assert store.stream_version("child", stream_type="order") == 3
        assert store.head() == 3
    taken = [entry for entry in logs if entry["event"] == "stale_lock_taken_over"]
    assert taken[0]["previous_pid"] == child.pid


def test_a_stale_reader_slot_of_a_killed_process_is_cleared_at_open(
    tmp_path: pathlib.Path,
) -> None:
    holder = _start(_HOLD, tmp_path)
    # Another live process (a backup tool, say) keeps the environment open, so LMDB does not
    # reset its reader table on our open: only reader_check() clears the dead holder's slot.
    bystander = _start(_RAW_READER, tmp_path)
    try:
        _kill(holder)
        assert str(holder.pid) in _readers_table(tmp_path)
        with capture_logs() as logs, EventStore.open(tmp_path, codec=Codec()) as store:
            assert store.stale_readers_cleared >= 1
            assert str(holder.pid) not in store.env.readers()
    finally:
        _kill(bystander)
    assert any(entry["event"] == "stale_readers_cleared" for entry in logs)


def _readers_table(path: pathlib.Path) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [
            sys.executable,
            "-c",
            "import sys, lmdb; print(lmdb.open(sys.argv[1], readonly=True, max_dbs=8).readers())",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout


def test_the_map_grows_by_itself_from_one_mebibyte_without_losing_data(
    tmp_path: pathlib.Path,
) -> None:
    codec = Codec(ORDERS.event_types)
    with capture_logs() as logs:
        store = EventStore.open(tmp_path, codec=codec, durability="async", map_size=2**20)
        try:
            for batch in range(40):
                appends = [
                    StreamAppend(
                        stream_id=f"order-{batch}-{i}",
                        stream_type="order",
                        expected_version=0,
                        events=events(10, f"order-{batch}-{i}"),
                    )
                    for i in range(50)
                ]
                assert all(isinstance(r, Committed) for r in store.append_batch(appends))
            assert store.map_size > 2**20
            db = store.open_db("view:big")
            store.write(lambda txn: [txn.put(b"%d" % i, b"x" * 500, db=db) for i in range(5000)])
        finally:
            store.close()
    assert any(entry["event"] == "map_grown" for entry in logs)
    with EventStore.open(tmp_path, codec=codec, map_size=2**20) as store:
        assert store.head() == 20_000
        assert sum(len(b) for b in store.read_all(batch_size=4096)) == 20_000
        assert store.stream_version("order-39-49", stream_type="order") == 10
        # A database handle must exist before the read transaction that uses it starts.
        db = store.open_db("view:big")
        assert store.read(lambda txn: txn.get(b"4999", db=db)) == b"x" * 500


def _write_batches(store: EventStore) -> None:
    for batch in range(25):
        results = store.append_batch(
            [
                StreamAppend(
                    stream_id=f"s{batch}-{i}",
                    stream_type="order",
                    expected_version=0,
                    events=events(10, f"s{batch}-{i}"),
                )
                for i in range(40)
            ]
        )
        assert not [r for r in results if isinstance(r, EngineError)]


def test_readers_in_other_threads_see_whole_batches_while_the_map_grows(
    tmp_path: pathlib.Path,
) -> None:
    store = EventStore.open(
        tmp_path, codec=Codec(ORDERS.event_types), durability="async", map_size=2**20
    )
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                head = store.head()
                records = [r for b in store.read_all(batch_size=500) for r in b]
                # Every append is 10 events of one stream: a torn batch would show up here.
                assert len(records) % 10 == 0
                assert len(records) >= head
                assert [r.position for r in records] == list(range(1, len(records) + 1))
                if records:
                    last = records[-1]
                    stream = store.read_stream(last.stream_id, stream_type=last.stream_type)
                    assert [r.version for r in stream] == list(range(1, 11))
                seen.append(len(records))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    try:
        with capture_logs() as logs:
            for thread in threads:
                thread.start()
            _write_batches(store)
            # Let the readers complete at least one full pass over the final log.
            deadline = time.monotonic() + TIMEOUT
            while (not seen or max(seen) < 10_000) and not errors:
                assert time.monotonic() < deadline, "the readers did not catch up in time"
                stop.wait(0.01)
            grown = store.map_size > 2**20
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT)
        store.close()
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert max(seen) == 10_000
    assert grown
    assert any(entry["event"] == "map_grown" for entry in logs)


def test_growth_waits_for_an_open_read_and_a_nested_read_does_not_deadlock(
    tmp_path: pathlib.Path,
) -> None:
    store = EventStore.open(tmp_path, codec=Codec(), durability="async", map_size=2**20)
    db = store.open_db("view:big")
    entered = threading.Event()
    release = threading.Event()
    nested: list[bytes | None] = []
    errors: list[BaseException] = []

    def hold(_txn: object) -> None:
        entered.set()
        release.wait(TIMEOUT)
        # A resize is pending now; a read inside a read must still get through.
        nested.append(store.read(lambda inner: inner.get(b"missing", db=db)))

    def reader() -> None:
        try:
            store.read(hold)
        except BaseException as error:
            errors.append(error)

    def writer() -> None:
        try:
            store.write(lambda txn: [txn.put(b"%d" % i, b"x" * 900, db=db) for i in range(3000)])
        except BaseException as error:
            errors.append(error)

    reading = threading.Thread(target=reader)
    writing = threading.Thread(target=writer)
    try:
        reading.start()
        assert entered.wait(TIMEOUT)
        writing.start()
        deadline = time.monotonic() + TIMEOUT
        while not store._gate._resizing:
            assert time.monotonic() < deadline, "the writer never asked to grow the map"
            release.wait(0.005)
        assert writing.is_alive()  # blocked: a read transaction is still open
        assert store.map_size == 2**20
        release.set()
        reading.join(TIMEOUT)
        writing.join(TIMEOUT)
        assert not errors, errors
        assert not reading.is_alive()
        assert not writing.is_alive()
        assert nested == [None]
        assert store.map_size > 2**20
        assert store.read(lambda txn: txn.get(b"2999", db=db)) == b"x" * 900
    finally:
        release.set()
        store.close()
