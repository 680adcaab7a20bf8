"""What the writer's own commits wrote, kept so that most appends read none of it back.

py-lmdb lets go of the GIL around each key a ``getmulti`` looks up; under a load (the
dispatcher, the callers, the projectors all waiting for the GIL) each hand-off costs far more
than the lookup. Every append batch read two things that way:

- **Stream heads**, to check each append's expected version: the writer's costliest step, 4-7%
  of the engine's samples (py-spy, 1k and 100k orders). The writer is the only one that writes
  heads while the store is open, so the heads it committed are the table's: the cache keeps
  them (two generations of at most ``size`` streams, the streams written last), and a batch
  reads from LMDB only the streams it does not hold.
- **Command ids**, each looked up in the idempotency table. Time-ordered ids (the default) are
  new, above every key there: a key above the greatest one the table holds needs no lookup.
  The cache keeps that greatest key (read once from the table, then raised by each batch;
  pruning only deletes keys, so it stays an upper bound). Too high is harmless (a lookup more);
  too low would skip a recorded id, and cannot be: a batch raises it before its commit.

Only what is surely committed is trusted. A batch opens a token when its transaction begins
(:meth:`HeadsCache.begin`, under the store's write lock) and puts its heads in before it
commits; :meth:`HeadsCache.settled` closes the token once the commit returned. A batch that
finds a token still open (the commit failed, or its outcome is not known yet) forgets
everything and reads from LMDB again.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["HEADS_KEPT", "HeadsCache"]

HEADS_KEPT: Final = 65536
"""Streams per generation: between this many and twice as many recently written streams."""


class HeadsCache:
    """Stream heads (packed stream key -> version) the writer committed; thread-safe.

    Args:
        size: Streams per generation (>= 1).
    """

    def __init__(self, size: int = HEADS_KEPT) -> None:
        self._size = size
        self._new: dict[bytes, int] = {}
        self._old: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._open = 0  # the token of a batch whose commit has not returned; 0: none
        # The greatest command-id key the idempotency table may hold; None: read it again.
        self._command_top: bytes | None = None

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def begin(self) -> int:
        """Start a batch (call under the store's write lock); return its token.

        If an earlier batch's commit never returned (it failed, or is being reported), what it
        put may not be in the table: everything is forgotten.
        """
        with self._lock:
            if self._open:
                self._new, self._old = {}, {}
                self._command_top = None
            self._open = next(self._tokens)
            return self._open

    @property
    def command_top(self) -> bytes | None:
        """The greatest key the idempotency table may hold (None: unknown, read the table)."""
        return self._command_top

    def raise_command_top(self, key: bytes) -> None:
        """Note ``key`` as held by the table (read from it, or put by this batch)."""
        top = self._command_top
        if top is None or key > top:
            self._command_top = key

    def split(self, keys: Iterable[bytes]) -> tuple[dict[bytes, int], list[bytes]]:
        """Return the heads held for ``keys``, and the keys to read from LMDB."""
        new, old = self._new, self._old
        held: dict[bytes, int] = {}
        missing: list[bytes] = []
        for key in keys:
            version = new.get(key)
            if version is None:
                version = old.get(key)
            if version is None:
                missing.append(key)
            else:
                held[key] = version
        return held, missing

    def put(self, heads: Mapping[bytes, int]) -> None:
        """Keep ``heads`` (a batch's, before its commit: trusted once :meth:`settled`)."""
        new = self._new
        for key, version in heads.items():
            if len(new) >= self._size and key not in new:
                self._old, new = new, {}
                self._new = new
            new[key] = version

    def settled(self, token: int) -> None:
        """The commit of the batch ``token`` returned: what it put is in the table."""
        with self._lock:
            if self._open == token:
                self._open = 0
