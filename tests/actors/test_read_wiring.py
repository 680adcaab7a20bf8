"""The projection modes ``Engine.open`` accepts (actors._read_wiring.check_projection).

The modes themselves run for real in ``tests/reliability/test_projection_process.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import Engine
from actors._read_wiring import check_projection


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_every_mode_is_accepted(mode: str) -> None:
    check_projection(mode)  # no error


@pytest.mark.parametrize("mode", ["processes", "", None, "PROCESS", "split"])
def test_an_unknown_mode_is_refused_with_the_modes_named_before_anything_opens(
    tmp_path: Path, mode: object
) -> None:
    path = tmp_path / "never"
    with pytest.raises(ValueError, match="'in-process' or 'process'"):
        Engine.open(path, projection=mode)  # type: ignore[arg-type]
    assert not path.exists()
