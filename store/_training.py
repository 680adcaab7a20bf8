"""When the log's compression dictionary is trained, on what, and whether it is kept.

The policy around :mod:`store._frames` (which holds the format). The engine's housekeeping
thread asks :meth:`DictionaryTraining.if_due` every round; it trains at
:data:`FIRST_TRAINING` events, then whenever the head reaches :data:`RETRAIN_FACTOR` times the
current dictionary's ``trained_at``: a young log may not show every kind of event yet.

Safe beside the writer: the sampling reads a snapshot, the training holds no transaction (zstd
releases the GIL while it trains, ~0.1-0.2 s for 8,000 samples), and the dictionary's row is
written in a transaction of its own before any record is compressed with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from store._frames import Dictionary, LogFrames, compressed_size, train
from store._logging import get_logger

if TYPE_CHECKING:
    from store._env import Database, Txn
    from store._txns import Transactions

__all__ = [
    "FIRST_TRAINING",
    "MIN_GAIN",
    "RETRAIN_FACTOR",
    "SAMPLES",
    "DictionaryTraining",
    "sample_log",
]

log = get_logger(__name__)

FIRST_TRAINING: Final = 10_000
"""The head at which the first dictionary is trained (enough records to be representative)."""
RETRAIN_FACTOR: Final = 16
"""A new dictionary is tried once the head is this many times the last one's ``trained_at``
(10k, 160k, 2.56M...)."""
SAMPLES: Final = 8_000
"""Most records a dictionary is trained on, taken at even strides over the whole log."""
MIN_GAIN: Final = 0.9
"""A candidate is installed only if it makes the samples at most 0.9x their current size."""


def sample_log(txn: Txn, log_db: Database, frames: LogFrames, head: int) -> list[bytes]:
    """Return up to :data:`SAMPLES` plain envelopes at even strides over positions 1..head."""
    positions = range(1, head + 1, max(1, head // SAMPLES))
    keys = [position.to_bytes(8, "big") for position in positions]
    found = txn.cursor(db=log_db).getmulti(keys)
    return frames.expand(txn, [bytes(value) for _, value in found], positions)


class DictionaryTraining:
    """Trains and installs the dictionaries of one event store.

    Args:
        txns: The store's transactions.
        dbs: The store's tables (``log``, ``dicts``).
        frames: The store's frames, which get each dictionary installed.
    """

    def __init__(self, txns: Transactions, dbs: dict[str, Database], frames: LogFrames) -> None:
        self._txns = txns
        self._dbs = dbs
        self._frames = frames
        self._next = 0  # a candidate no better than the current one defers the next try

    def if_due(self, head: int) -> Dictionary | None:
        """Train (see :meth:`now`) if the log at ``head`` has grown enough; else None."""
        current = self._frames.current
        due = FIRST_TRAINING if current is None else current.trained_at * RETRAIN_FACTOR
        if head < max(due, self._next):
            return None
        return self.now(head)

    def now(self, head: int) -> Dictionary | None:
        """Train a dictionary on records sampled up to ``head``; install it if it pays.

        It is installed (stored, then used for every record appended after) only if it makes
        the samples at most :data:`MIN_GAIN` times the size the current dictionary does;
        otherwise the next try waits until the log doubled. Records already written keep their
        form.

        Returns:
            The dictionary installed, or None.
        """
        self._next = 2 * head
        if head == 0:
            return None
        log_db, frames = self._dbs["log"], self._frames
        samples = self._txns.read(lambda txn: sample_log(txn, log_db, frames, head))
        current = frames.current
        candidate = train(samples, 1 if current is None else current.dict_id + 1, head)
        if candidate is None:
            log.info("log_dictionary_untrainable", head=head, samples=len(samples))
            return None
        before = compressed_size(current, samples)
        after = compressed_size(candidate, samples)
        if after > before * MIN_GAIN:
            log.info("log_dictionary_kept", head=head, bytes_now=before, bytes_candidate=after)
            return None
        dicts = self._dbs["dicts"]
        self._txns.write(lambda txn: txn.put(candidate.key(), candidate.row(), db=dicts))
        frames.install(candidate)
        log.info(
            "log_dictionary_trained",
            dict_id=candidate.dict_id,
            head=head,
            samples=len(samples),
            plain_bytes=sum(map(len, samples)),
            bytes_before=before,
            bytes_after=after,
        )
        return candidate
