import hashlib
from collections import Counter
from pathlib import Path

import pytest

from cluster import LAYOUT_FILE, ShardCountMismatch, ShardedEngine, shard_for
from cluster._layout import record_shard_count, recorded_shard_count
from domain.errors import StorageError


def test_the_shard_of_an_id_is_pinned_for_ever() -> None:
    # Changing these moves every aggregate of every existing sharded directory: never do it.
    assert [shard_for(f"o-{i}", 4) for i in range(8)] == [1, 1, 0, 2, 2, 2, 0, 1]
    expected = int.from_bytes(hashlib.blake2b(b"order-1", digest_size=8).digest(), "big") % 4
    assert shard_for("order-1", 4) == expected == 1
    assert shard_for("\u00fcn\u00efcode", 3) == 0
    assert shard_for("anything", 1) == 0


def test_ids_spread_over_the_shards() -> None:
    counts = Counter(shard_for(f"order-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800


def test_the_shard_count_is_recorded_once_and_checked(tmp_path: Path) -> None:
    assert recorded_shard_count(tmp_path) is None
    record_shard_count(tmp_path, 3)
    record_shard_count(tmp_path, 3)
    assert recorded_shard_count(tmp_path) == 3
    with pytest.raises(ShardCountMismatch) as caught:
        record_shard_count(tmp_path, 4)
    assert (caught.value.recorded, caught.value.requested) == (3, 4)
    assert "shards=3" in str(caught.value)


def test_a_mismatch_is_raised_before_any_shard_or_ray_starts(tmp_path: Path) -> None:
    record_shard_count(tmp_path, 2)
    # No Ray fixture here: a shard start would need Ray, so this proves the order of checks.
    with pytest.raises(ShardCountMismatch):
        ShardedEngine.open(tmp_path, shards=5)
    assert not (tmp_path / "shard-0").exists()


def test_a_damaged_layout_record_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / LAYOUT_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(StorageError, match=LAYOUT_FILE):
        record_shard_count(tmp_path, 2)


def test_a_bad_shard_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shards"):
        ShardedEngine.open(tmp_path, shards=0)


@pytest.mark.parametrize(
    "pins",
    [{2: {"node-a": 1}}, {-1: {"node-a": 1}}, {0: {"node-a": 0}}, {0: {"node-a": True}}],
    ids=str,
)
def test_bad_shard_resources_are_refused_before_anything_starts(
    tmp_path: Path, pins: dict[int, dict[str, float]]
) -> None:
    with pytest.raises(ValueError, match="shard_resources"):
        ShardedEngine.open(tmp_path / "sharded", shards=2, shard_resources=pins)
    assert not (tmp_path / "sharded").exists()
