"""The switch interval an engine sets (actors._switching), through a real Engine.open."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_kit import create, open_engine

from actors import Engine
from actors._switching import ENGINE_SWITCH_INTERVAL, tune_switching

CPYTHON_DEFAULT = 0.005


@pytest.fixture(autouse=True)
def _interval() -> Iterator[None]:
    """Start every test from CPython's default and put back what the suite had."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(CPYTHON_DEFAULT)
    yield
    sys.setswitchinterval(before)


def test_an_engine_lowers_the_switch_interval_by_default(tmp_path: Path) -> None:
    with open_engine(tmp_path) as engine:
        assert sys.getswitchinterval() == pytest.approx(ENGINE_SWITCH_INTERVAL)
        assert engine.execute(create("o1")).version == 1
    # Process-wide, like the collector's thresholds: it stays set after close.
    assert sys.getswitchinterval() == pytest.approx(ENGINE_SWITCH_INTERVAL)


def test_a_shorter_interval_the_program_set_is_kept(tmp_path: Path) -> None:
    sys.setswitchinterval(0.0002)
    with open_engine(tmp_path):
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    with open_engine(tmp_path / "other", switch_interval=0.0001):
        assert sys.getswitchinterval() == pytest.approx(0.0001)


def test_none_leaves_the_interval_alone(tmp_path: Path) -> None:
    with open_engine(tmp_path, switch_interval=None):
        assert sys.getswitchinterval() == pytest.approx(CPYTHON_DEFAULT)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-0.001, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("1ms", TypeError),
    ],
)
def test_a_bad_interval_is_refused_before_anything_opens(
    tmp_path: Path, value: object, error: type[Exception]
) -> None:
    path = tmp_path / "never"
    with pytest.raises(error, match="switch_interval"):
        Engine.open(path, views=[], switch_interval=value)  # type: ignore[arg-type]
    assert not path.exists()  # nothing was created
    assert sys.getswitchinterval() == pytest.approx(CPYTHON_DEFAULT)
    with pytest.raises(error, match="switch_interval"):
        tune_switching(value)  # type: ignore[arg-type]
