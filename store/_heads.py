"""The stream heads the last commits wrote, kept by the writer so that most appends read none.

Every append batch checks each append's expected version against its stream's head. Reading the
heads took one ``getmulti`` per batch, and py-lmdb lets go of the GIL around each key it looks
up: under a load (the dispatcher, the callers, the projectors all waiting for the GIL), that was
the writer's costliest step, 4-7% of the engine's samples (py-spy, 1k and 100k orders). The
writer is the only one that writes heads while the store is open, so the heads it committed are
the table's: :class:`HeadsCache` keeps them, and a batch reads from LMDB only the streams it does
not hold.

Only heads that are surely committed are trusted. A batch opens a token when its transaction
begins (:meth:`HeadsCache.begin`, under the store's write lock) and puts its heads in before it
commits; :meth:`HeadsCache.settled` closes the token once the commit returned. A batch that
finds a token still open (the commit failed, or its outcome is not known yet) empties the cache
and reads every head from LMDB. Two generations of at most ``size`` streams each bound it (the
streams written last are kept).
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
            self._open = next(self._tokens)
            return self._open

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
