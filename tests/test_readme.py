"""The README's snippets run as written, in a real subprocess (they are what a newcomer copies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0


def snippet(heading: str) -> str:
    """Return the first python code block under the README section ``heading``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.index(f"\n## {heading}\n")
    start = text.index("```python\n", section) + len("```python\n")
    return text[start : text.index("```", start)]


def run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the repository importable, in ``cwd``."""
    return subprocess.run(  # noqa: S603 - our own interpreter and our own README's code
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_own_aggregates_and_read_models_snippet_runs_and_prints_what_it_says(
    tmp_path: Path,
) -> None:
    done = run(snippet("Your own aggregates and read models"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["30", "0", "1"]
    assert (tmp_path / "bank-data").is_dir()


def test_the_given_when_then_snippet_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    done = run(snippet("Testing deciders: given / when / then"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["shipped", "order_not_pending"]


def test_the_inventory_example_snippet_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    done = run(snippet("A second domain, step by step: inventory"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2", "['mug', 'kettle']", "5"]
    assert (tmp_path / "shop-data").is_dir()
