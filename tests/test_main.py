"""The command line, run as real subprocesses (``python main.py ... --data tmp``)."""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import lmdb
import pytest

from actors import Engine

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
TIMEOUT = 60.0
COMMANDS = ("demo", "status", "events", "rebuild", "bench", "serve", "compact", "backup")
STATUS_KEYS = {
    "head",
    "views",
    "live_aggregates",
    "parked_events",
    "durability",
    "file_size",
}
VIEW_KEYS = {"position", "lag_events", "lag_seconds"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter running our own CLI
        [sys.executable, str(MAIN), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """Read one line of the child's stdout or stderr, whichever speaks, before ``deadline``."""
    streams = [stream for stream in (process.stdout, process.stderr) if stream is not None]
    with selectors.DefaultSelector() as selector:
        for stream in streams:
            selector.register(stream, selectors.EVENT_READ)
        ready = selector.select(timeout=max(0.0, deadline - time.monotonic()))
    assert ready, "the child said nothing in time"
    line: str = ready[0][0].fileobj.readline()  # type: ignore[union-attr]
    return line


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("cli") / "data"
    result = run("demo", "--orders", "30", "--data", data)
    assert result.returncode == 0, result.stderr
    return data, result.stdout


def test_demo_on_a_fresh_directory_prints_what_the_views_answer(
    populated: tuple[Path, str],
) -> None:
    _, out = populated
    for heading in (
        "Workload",
        "GetOrderById(",
        "GetCustomerOrders(",
        "SearchOrders(",
        "GetOrderStats()",
        "Engine status",
        "Views",
    ):
        assert heading in out
    for handled in (
        "CommandRejected",
        "AggregateNotFound",
        "ConcurrencyConflict",
        "IdempotencyConflict",
    ):
        assert handled in out
    assert "the original result, nothing appended" in out


def test_demo_runs_again_on_the_same_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("demo", "--orders", "5", "--data", data).returncode == 0
    first = json.loads(run("status", "--json", "--data", data).stdout)
    again = run("demo", "--orders", "5", "--data", data)
    assert again.returncode == 0, again.stderr
    second = json.loads(run("status", "--json", "--data", data).stdout)
    assert second["head"] > first["head"]
    assert "Traceback" not in again.stderr


def test_status_json_has_the_contract_fields(populated: tuple[Path, str]) -> None:
    data, _ = populated
    result = run("status", "--json", "--data", data)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status) >= STATUS_KEYS
    assert status["head"] > 30
    assert status["durability"] == "sync"
    assert status["file_size"] > 0
    # Every demo command has an id, and none is older than the default window (7 days).
    assert status["idempotency_entries"] > 30
    assert isinstance(status["idempotency_oldest"], float)
    assert set(status["views"]) == {
        "order_details",
        "customer_orders",
        "order_search",
        "order_stats",
    }
    for view in status["views"].values():
        assert set(view) >= VIEW_KEYS
        assert view["position"] == status["head"]


def test_status_prints_tables_by_default(populated: tuple[Path, str]) -> None:
    data, _ = populated
    result = run("status", "--data", data)
    assert result.returncode == 0, result.stderr
    for word in (
        "head",
        "durability",
        "order_details",
        "lag_events",
        "file_size",
        "idempotency_entries",
        "idempotency_oldest",
        "log_dictionary",
    ):
        assert word in result.stdout


def test_verbose_logs_go_to_stderr_and_stdout_stays_data(populated: tuple[Path, str]) -> None:
    data, _ = populated
    result = run("status", "--json", "-v", "--data", data)
    assert result.returncode == 0
    assert json.loads(result.stdout)["head"] > 0
    assert "engine_opened" in result.stderr
    assert "engine_opened" not in run("status", "--json", "--data", data).stderr


def test_events_prints_the_log_as_json_lines(populated: tuple[Path, str]) -> None:
    data, _ = populated
    result = run("events", "--data", data)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    head = json.loads(run("status", "--json", "--data", data).stdout)["head"]
    assert [line["position"] for line in lines] == list(range(1, head + 1))
    first = lines[0]
    assert set(first) == {
        "position",
        "stream_id",
        "stream_type",
        "version",
        "tag",
        "schema_version",
        "timestamp",
        "command_id",
        "event",
    }
    assert first["tag"] == "OrderCreated"
    assert first["event"]["order_id"] == first["stream_id"]
    assert isinstance(first["event"]["items"][0]["price"], str)  # exact money


def test_events_of_one_stream_from_a_position_with_a_limit(populated: tuple[Path, str]) -> None:
    data, _ = populated
    first = json.loads(run("events", "--limit", "1", "--data", data).stdout)
    stream = run("events", "--stream", first["stream_id"], "--data", data)
    versions = [json.loads(line)["version"] for line in stream.stdout.splitlines()]
    assert versions == list(range(1, len(versions) + 1))
    page = run("events", "--from", "10", "--limit", "3", "--data", data)
    assert [json.loads(line)["position"] for line in page.stdout.splitlines()] == [10, 11, 12]
    assert run("events", "--stream", "no-such-order", "--data", data).stdout == ""


@pytest.mark.parametrize(
    ("stream", "words"),
    [("a/b", "may not hold '/'"), ("search", "reserved"), ("x" * 129, "the limit is 128")],
)
def test_a_stream_id_outside_the_id_grammar_is_bad_usage_naming_the_rule(
    tmp_path: Path, stream: str, words: str
) -> None:
    result = run("events", "--stream", stream, "--data", tmp_path / "data")
    assert result.returncode == 2
    assert "argument --stream" in result.stderr
    assert words in result.stderr
    assert not (tmp_path / "data").exists()


def test_events_stop_at_a_corrupt_record_with_one_line_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("demo", "--orders", "3", "--data", data).returncode == 0
    env = lmdb.open(str(data), max_dbs=64)
    try:
        log = env.open_db(b"log")
        with env.begin(write=True, db=log) as txn:
            cursor = txn.cursor()
            assert cursor.last()
            bad = int.from_bytes(cursor.key(), "big") + 1
            txn.put(bad.to_bytes(8, "big"), b"not an envelope")
    finally:
        env.close()
    result = run("events", "--data", data)
    line = one_error_line(result)
    assert f"position {bad}" in line
    assert len(result.stdout.splitlines()) == bad - 1  # everything before it was printed


def test_rebuild_prints_events_per_second(populated: tuple[Path, str]) -> None:
    data, _ = populated
    result = run("rebuild", "--data", data)
    assert result.returncode == 0, result.stderr
    assert re.search(r"[\d,]+ events/s", result.stdout), result.stdout
    one = run("rebuild", "--view", "order_stats", "--data", data)
    assert one.returncode == 0
    assert one.stdout.startswith("rebuilt order_stats:")


def test_rebuild_of_an_unknown_view_is_one_line(populated: tuple[Path, str]) -> None:
    data, _ = populated
    line = one_error_line(run("rebuild", "--view", "nope", "--data", data))
    assert "order_details" in line  # it names the views there are


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nope"],
        ["demo", "--orders", "many"],
        ["demo", "--orders", "-1"],
        ["events", "--from", "-3"],
        ["events", "--stream", "a/b"],
        ["events", "--stream", "search"],
        ["serve", "--port", "70000"],
        ["status", "--unknown"],
    ],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path) -> None:
    result = run(*args, "--data", tmp_path / "data") if args else run()
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert "--data" in result.stdout


@pytest.mark.parametrize("command", [["status"], ["events"], ["rebuild"], ["demo"]])
def test_data_pointing_to_a_regular_file_is_one_line(command: list[str], tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("not a directory")
    line = one_error_line(run(*command, "--data", regular))
    assert str(regular) in line
    nested = one_error_line(run(*command, "--data", regular / "below"))
    assert "Not a directory" in nested


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A child process holding an engine open on a data directory until its stdin closes."""
    data = tmp_path / "held"
    code = (
        "import logging, sys\nimport structlog\nfrom actors import Engine\n"
        "structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))\n"
        f"with Engine.open({str(data)!r}, views=[]):\n"
        "    print('ready', flush=True)\n    sys.stdin.read()\n"
    )
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(child, time.monotonic() + TIMEOUT).strip() == "ready"
        yield data, child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=TIMEOUT)
        for stream in (child.stdout, child.stderr):
            assert stream is not None
            stream.close()


@pytest.mark.parametrize(
    "command", [["status"], ["events"], ["demo", "--orders", "1"], ["compact"]]
)
def test_a_directory_held_by_another_process_is_one_line_naming_its_pid(
    holder: tuple[Path, int], command: list[str]
) -> None:
    data, pid = holder
    line = one_error_line(run(*command, "--data", data))
    assert f"process {pid}" in line
    assert str(data) in line


def test_backup_copies_a_directory_another_process_holds(
    holder: tuple[Path, int], tmp_path: Path
) -> None:
    data, _ = holder
    dest = tmp_path / "copy"
    result = run("backup", dest, "--data", data)
    assert result.returncode == 0, result.stderr
    assert f"backed up {data} to {dest}" in result.stdout
    assert (dest / "data.mdb").is_file()
    again = one_error_line(run("backup", dest, "--data", data))
    assert "not an empty directory" in again


def test_compact_of_a_stopped_directory_prints_its_sizes(
    populated: tuple[Path, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(populated[0], data)  # the shared directory stays as the other tests saw it
    result = run("compact", "--data", data)
    assert result.returncode == 0, result.stderr
    assert f"compacted {data}: " in result.stdout
    assert run("status", "--json", "--data", data).returncode == 0


def test_a_directory_held_by_this_process_is_one_line_naming_it(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "data", views=[]):
        line = one_error_line(run("status", "--data", tmp_path / "data"))
    assert f"process {os.getpid()}" in line


@contextmanager
def serving(data: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``main.py serve`` on ``data`` (any free port); yield the process and its base URL."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, str(MAIN), "serve", "--port", "0", "--data", str(data), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(child, time.monotonic() + TIMEOUT)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, line
        yield child, found.group(0)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        child.wait(timeout=TIMEOUT)
        for stream in (child.stdout, child.stderr):
            assert stream is not None
            stream.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with serving(tmp_path / "data") as served:
        yield served


def test_serve_with_a_projection_process_reads_its_writes(tmp_path: Path) -> None:
    with serving(tmp_path / "data", "--projection", "process") as (child, url):
        order = {
            "customer_id": "alice",
            "items": [{"product_id": "widget", "quantity": 2, "price": "9.99"}],
            "shipping_address": {
                "street": "1 Main St",
                "city": "Springfield",
                "postal_code": "12345",
                "country": "US",
            },
        }
        created = httpx.post(f"{url}/orders", json=order, timeout=30)
        assert created.status_code == 201, created.text
        answer = created.json()
        found = httpx.get(
            f"{url}/orders/{answer['order_id']}",
            params={"after": answer["position"]},
            timeout=30,
        )
        assert found.status_code == 200, found.text
        assert found.json()["total_amount"] == "19.98"
        projection = httpx.get(f"{url}/status", timeout=30).json()["projection"]
        assert projection["state"] == "running"
        assert projection["pid"] not in (0, child.pid)
        assert "order_details" in projection["views"]


def test_serve_refuses_a_projection_process_over_shards(tmp_path: Path) -> None:
    data = tmp_path / "sharded"
    data.mkdir()
    (data / "cluster.json").write_text('{"shards": 2}')
    line = one_error_line(run("serve", "--projection", "process", "--data", data))
    assert "--projection applies to one engine" in line


def test_serve_answers_http_and_stops_cleanly_on_sigint(
    server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    child, url = server
    response = httpx.get(f"{url}/status", timeout=30)
    assert response.status_code == 200
    assert response.json()["head"] == 0
    line = one_error_line(run("status", "--data", tmp_path / "data"))
    assert f"process {child.pid}" in line
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=TIMEOUT) == 0
    assert child.stdout is not None
    assert child.stdout.read() == ""  # stdout carries only data; serving prints none


def test_serve_on_a_busy_port_is_one_line(
    server: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _, url = server
    port = url.rsplit(":", 1)[1]
    line = one_error_line(run("serve", "--port", port, "--data", tmp_path / "other"))
    assert f"127.0.0.1:{port}" in line
