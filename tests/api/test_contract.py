"""The published OpenAPI contract, checked by Schemathesis against the real server.

``python main.py serve`` runs in a subprocess on a free loopback port with a fresh data
directory; Schemathesis (its CLI, in a subprocess: its Hypothesis settings and plugins stay out
of this process) runs every check in every phase with a fixed seed and a bounded number of
examples. The stateful phase gets a server of its own: the fuzzing phase leaves orders under
the short ids the stateful phase draws too, and nearly every workflow would start with a 409.
Any failure prints Schemathesis' own report, with a curl line to reproduce it.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "main.py"
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261205
EXAMPLES = 100  # per operation and phase; the stateful phase runs as many scenarios
STARTUP_SECONDS = 30.0
RUN_SECONDS = 240.0
STOP_SECONDS = 30.0

pytestmark = [pytest.mark.contract, pytest.mark.timeout(2 * RUN_SECONDS)]


@contextmanager
def real_server(data: Path) -> Iterator[str]:
    """Run ``main.py serve --port 0`` on ``data``; yield its base URL; stop it with SIGINT."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter running our own CLI
        [sys.executable, str(MAIN), "serve", "--port", "0", "--data", str(data)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        # Reads the server's stderr to the end, so its warnings never fill the pipe and stall it.
        assert child.stderr is not None
        for line in child.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=drain, name="server-stderr", daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=STARTUP_SECONDS)
        found = re.search(r"http://127\.0\.0\.1:\d+", first or "")
        assert found, f"the server did not start: {''.join(log)}"
        yield found.group(0)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        code = child.wait(timeout=STOP_SECONDS)
        reader.join(STOP_SECONDS)
        assert child.stderr is not None
        child.stderr.close()
        assert code == 0, f"the server stopped with {code}: {''.join(log)[-3000:]}"


def schemathesis(url: str, phases: str, reports: Path) -> subprocess.CompletedProcess[str]:
    """Run Schemathesis' CLI against ``url`` with every check; NDJSON events go to ``reports``."""
    return subprocess.run(  # noqa: S603 - our own interpreter running an installed tool
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            phases,
            "--seed",
            str(SEED),
            "--max-examples",
            str(EXAMPLES),
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--generation-database",
            "none",
            "--report",
            "ndjson",
            "--report-dir",
            str(reports),
            "--no-color",
        ],
        cwd=reports.parent,
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )


def applied_links(reports: Path) -> Counter[tuple[str, int]]:
    """Count the links the stateful phase followed, by link and answer status."""
    followed: Counter[tuple[str, int]] = Counter()
    (events,) = reports.glob("*.ndjson")
    for line in events.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished["recorder"]
        for case_id, exchange in recorder.get("interactions", {}).items():
            case = recorder["cases"][case_id]
            if (
                case.get("transition")
                and case.get("is_transition_applied")
                and exchange["response"]
            ):
                followed[case["transition"]["id"], exchange["response"]["status_code"]] += 1
    return followed


def test_examples_coverage_and_fuzzing_find_no_failure_in_any_check(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    with real_server(tmp_path / "data") as url:
        run = schemathesis(url, "examples,coverage,fuzzing", reports)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    for phase in ("Examples", "Coverage", "Fuzzing"):
        assert re.search(rf"✅ {phase}\n", run.stdout), run.stdout[-5000:]


def test_stateful_workflows_follow_the_links_of_an_order_with_no_failure(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    with real_server(tmp_path / "data") as url:
        run = schemathesis(url, "stateful", reports)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert re.search(r"✅ Stateful\n", run.stdout), run.stdout[-5000:]
    # The workflows did happen: orders were created through a link, then read, added to,
    # shipped or cancelled through links, with success answers.
    succeeded = {
        link.rsplit(" -> ", 1)[1]
        for (link, status), _ in applied_links(reports).items()
        if status < 300
    }
    assert {"POST /orders", "GET /orders/{order_id}", "POST /orders/{order_id}/items"} <= succeeded
    assert succeeded & {"POST /orders/{order_id}/ship", "POST /orders/{order_id}/cancel"}
