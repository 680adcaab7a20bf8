import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cluster_kit
import httpx
import pytest
import ray
from cluster_kit import create

from actors import Engine
from cli import CliError, open_engine, rebuild, status
from cluster import LAYOUT_FILE, ShardedEngine

ROOT = Path(__file__).resolve().parent.parent.parent
MAIN = ROOT / "main.py"
STARTUP_SECONDS = 60.0

ray_local = cluster_kit.ray_local


def test_status_and_rebuild_work_over_a_sharded_directory(
    ray_local: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del ray_local
    with ShardedEngine.open(tmp_path, shards=2) as engine:
        for i in range(6):
            engine.execute(create(f"o-{i}"))
        heads = engine.heads()
    # The command functions, not main(): main() configures logging for the whole process.
    assert status(tmp_path, as_json=True) == 0
    # The JSON is the last line (another test may have left logging configured to stdout).
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {int(s): v["head"] for s, v in shown["shards"].items()} == heads
    assert rebuild(tmp_path, view=None) == 0
    assert "6 events" in capsys.readouterr().out
    with pytest.raises(CliError, match="sharded data directory"):
        open_engine(tmp_path)


@contextmanager
def _serving(*args: str | Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``main.py serve --port 0 ARGS``; yield it and its base URL once it listens."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own CLI
        [sys.executable, str(MAIN), "serve", "--port", "0", *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        # Reads stderr to the end, so that Ray's and the server's lines never stall the child.
        assert child.stderr is not None
        for line in child.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, name="server-stderr", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        found = None
        while found is None:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"the server stopped: {''.join(log)}"
            found = re.search(r"serving .* on (http://127\.0\.0\.1:\d+)", line)
        yield child, found.group(1)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        code = child.wait(timeout=STARTUP_SECONDS)
        reader.join(STARTUP_SECONDS)
        assert child.stdout is not None
        assert child.stdout.read() == ""  # stdout carries only data; serving prints none
        for stream in (child.stdout, child.stderr):
            assert stream is not None
            stream.close()
        assert code == 0, f"the server stopped with {code}: {''.join(log)[-3000:]}"


def _run(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter running our own CLI
        [sys.executable, str(MAIN), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        env=env,
        check=False,
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_serve_shards_creates_serves_and_reopens_a_sharded_directory(
    ray_local: None, tmp_path: Path
) -> None:
    del ray_local
    # The server joins this session's Ray (RAY_ADDRESS) instead of starting one of its own.
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    data = tmp_path / "data"
    with _serving("--shards", "2", "--data", data, env=env) as (_, url):
        with httpx.Client(base_url=url, timeout=30) as client:
            created = client.post("/orders", json=_order("o-1"))
            assert created.status_code == 201, created.text
            position = created.json()["position"]
            read = client.get("/orders/o-1", params={"after": position})
            assert read.status_code == 200, read.text
            status = client.get("/status").json()
        assert set(status["shards"]) == {"0", "1"}
    assert (data / LAYOUT_FILE).is_file()
    # Without --shards, serve finds the sharded directory, with its orders.
    with _serving("--data", data, env=env) as (_, url):
        read = httpx.get(f"{url}/orders/o-1", params={"after": position}, timeout=30)
        assert read.status_code == 200, read.text
    line = _error_line(_run("serve", "--shards", "3", "--data", data, env=env))
    assert "holds 2 shards, not 3" in line
    with Engine.open(tmp_path / "plain", views=[]):
        pass
    line = _error_line(_run("serve", "--shards", "2", "--data", tmp_path / "plain", env=env))
    assert "not a sharded data directory" in line


def _order(order_id: str) -> dict[str, object]:
    return {
        "order_id": order_id,
        "customer_id": "alice",
        "items": [{"product_id": "widget", "quantity": 2, "price": "9.99"}],
        "shipping_address": {
            "street": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
    }
