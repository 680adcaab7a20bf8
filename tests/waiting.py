"""Waiting on a condition with a deadline: the one poll every test kit uses.

Tests never sleep to order events: they wait for the condition they need, and fail with a
message once its deadline passes (the suite's pytest-timeout is a last resort, not the
deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["WAIT", "wait_until"]

WAIT: Final = 30.0
"""Seconds a condition gets by default: generous, since a passing test never waits it out."""


def wait_until(
    condition: Callable[[], bool], timeout: float = WAIT, what: str = "the condition"
) -> bool:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds.

    Returns True, so ``assert wait_until(...)`` reads as the assertion it is.

    Raises:
        AssertionError: ``condition`` still fails at the deadline (naming ``what``).
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    delay = 0.001  # short at first (most conditions hold within milliseconds), then gentler
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        pause.wait(delay)  # a bounded poll of a condition, not a sleep for ordering
        delay = min(delay * 2, 0.02)
    return True
