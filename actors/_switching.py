"""The interpreter's thread switch interval while an engine runs (process-wide, opt-out).

Every py-lmdb call lets go of the GIL around its LMDB call: ``putmulti`` and ``getmulti`` do so
*per key*. Taking it back waits until the thread holding it lets go, which a thread running
Python does at the latest after the switch interval (CPython's default: 5 ms). Under a write
load the projector (a row per event and LMDB view) and the writer (four keys per event) each
wait so thousands of times a second: measured in the 10M-event soak workload, the views'
commits spent 40-50% of the projector's wall time in ``putmulti`` for 2-3% of CPU, the
writer's batch writes ~40% for 6-7%. The process is GIL-bound (one core of user time), so a
thread letting go of the GIL per key gets a smaller share of it, and from 1-4M events (100k+
orders) the projector fell behind the writers for good. With a 1 ms interval it fell behind
later on the whole (soaks at 8.25M and 5M, probes at 2.25M and past 2.5M; at 5 ms probes at
1M and 1.5M, soaks at ~3.25M and ~4M): it moves the point, it does not remove it (README).
Commands in flight stayed within this machine's noise (-1%, alternating pairs); 0.2 ms cost
~10% of them.
"""

from __future__ import annotations

import math
import sys
from typing import Final

__all__ = ["ENGINE_SWITCH_INTERVAL", "check_switch_interval", "tune_switching"]

ENGINE_SWITCH_INTERVAL: Final = 0.001
"""Seconds: the switch interval an engine sets by default (only ever lowering it)."""


def check_switch_interval(seconds: float | None) -> None:
    """Refuse a switch interval the interpreter would refuse, before anything is opened.

    Raises:
        TypeError: ``seconds`` is not a number (an int or a float; not a bool).
        ValueError: ``seconds`` is not finite, or not above 0.
    """
    if seconds is None:
        return
    # bool is an int: True must not pass for a second.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"switch_interval must be a number of seconds, got {seconds!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"switch_interval must be a number of seconds above 0, got {seconds!r}")


def tune_switching(seconds: float) -> None:
    """Lower the interpreter's switch interval to ``seconds`` (never raise a shorter one).

    Process-wide, like the collector's thresholds (:func:`~actors._registry.tune_collector`):
    a program that set a shorter interval keeps it.
    """
    check_switch_interval(seconds)
    if seconds < sys.getswitchinterval():
        sys.setswitchinterval(seconds)
