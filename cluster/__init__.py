"""The sharded engine: the engine's API over N shards, each an `Engine` in a Ray actor process.

Install the ``cluster`` extra (``pip install "orderlog[cluster]"``) to use it. See section 3c of
the design and the README section "Running on Ray".
"""

from cluster._batcher import ShardFuture
from cluster._engine import ShardedEngine
from cluster._layout import HASH_NAME, LAYOUT_FILE, shard_dir, shard_for
from cluster._merge import Merger
from domain.errors import ShardCountMismatch, ShardUnavailable

__all__ = [
    "HASH_NAME",
    "LAYOUT_FILE",
    "Merger",
    "ShardCountMismatch",
    "ShardFuture",
    "ShardUnavailable",
    "ShardedEngine",
    "shard_dir",
    "shard_for",
]
