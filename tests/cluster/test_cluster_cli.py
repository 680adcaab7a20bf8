import json
from pathlib import Path

import cluster_kit
import pytest
from cluster_kit import create

from cli import CliError, open_engine, rebuild, status
from cluster import ShardedEngine

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
