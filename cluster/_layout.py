"""Where a sharded engine keeps its data, and the stable hash that picks an aggregate's shard.

A sharded data directory holds one engine data directory per shard, ``shard-0`` ...
``shard-<n-1>``, and ``cluster.json`` recording the shard count and the hash: both fix where every
aggregate lives, so neither may change once the directory holds data.

The hash is the first 8 bytes of BLAKE2b (``digest_size=8``) of the aggregate id's UTF-8 bytes,
read as a big-endian unsigned integer, modulo the shard count. It is the same in every process,
run and release (Python's ``hash()`` is salted per process, so it is never used).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Final

from domain.errors import ShardCountMismatch, StorageError

__all__ = [
    "HASH_NAME",
    "LAYOUT_FILE",
    "record_shard_count",
    "recorded_shard_count",
    "shard_dir",
    "shard_for",
]

LAYOUT_FILE: Final = "cluster.json"
"""The file under a sharded data directory that records its shard count and hash."""

HASH_NAME: Final = "blake2b-8/utf-8/big-endian/mod-shards"
"""The routing hash, recorded with the count so that a future change of it is detected."""


def shard_for(aggregate_id: str, shards: int) -> int:
    """Return the shard (``0 .. shards-1``) that owns ``aggregate_id``.

    Args:
        aggregate_id: The aggregate's id, as the decider's ``aggregate_id`` returns it.
        shards: How many shards there are (at least 1).
    """
    digest = hashlib.blake2b(aggregate_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_dir(path: str | os.PathLike[str], shard: int) -> Path:
    """Return the data directory of ``shard`` under the sharded data directory ``path``."""
    return Path(path) / f"shard-{shard}"


def recorded_shard_count(path: str | os.PathLike[str]) -> int | None:
    """Return the shard count recorded under ``path``, or None if nothing is recorded there.

    Raises:
        StorageError: The record exists but cannot be read.
    """
    layout = Path(path) / LAYOUT_FILE
    try:
        data = json.loads(layout.read_text(encoding="utf-8"))
        shards = data["shards"]
        hash_name = data["hash"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StorageError(f"reading {layout}", repr(error)) from error
    if not isinstance(shards, int) or shards < 1 or hash_name != HASH_NAME:
        raise StorageError(
            f"reading {layout}", f"unexpected content {data!r} (expected hash {HASH_NAME!r})"
        )
    return shards


def record_shard_count(path: str | os.PathLike[str], shards: int) -> None:
    """Check ``shards`` against the count recorded under ``path``; record it if there is none.

    Args:
        path: The sharded data directory (created if missing).
        shards: The shard count asked for.

    Raises:
        ShardCountMismatch: ``path`` was created with another count.
        StorageError: The record cannot be read or written.
    """
    recorded = recorded_shard_count(path)
    if recorded is not None:
        if recorded != shards:
            raise ShardCountMismatch(str(path), recorded, shards)
        return
    root = Path(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f"{LAYOUT_FILE}.tmp"
        with temporary.open("w", encoding="utf-8") as file:
            json.dump({"shards": shards, "hash": HASH_NAME}, file)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(root / LAYOUT_FILE)
    except OSError as error:
        raise StorageError(f"writing {root / LAYOUT_FILE}", repr(error)) from error
