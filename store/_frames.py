"""Log values compressed with zstd, with dictionaries trained on the log itself.

A log value is either a plain msgpack envelope (:mod:`store._codec`: it starts with an array
header, ``0x99``) or a standard zstd frame (it starts with the zstd magic ``28 b5 2f fd``, which
no msgpack array does) compressed with the dictionary whose id the frame names. The dictionaries
live in the log environment's ``dicts`` table: 4-byte big-endian id -> msgpack ``(trained_at,
dictionary)``, where ``trained_at`` is the head the samples were taken up to.

Why: an envelope repeats what every record of its kind holds (field names, tags, the stream type,
the leading digits of time-ordered ids). A dictionary trained on the log's own records takes
them out: order events shrink from ~240 to ~75-110 bytes. Records are small, so plain zstd
(no dictionary) would gain little.

Why batches: python-zstandard releases the GIL around every (de)compression. One call per record
would re-take it once per record, and under contention each re-take can wait a whole switch
interval (measured: 1.1 us per record alone, 700 us beside a busy thread). Every path here is
one ``multi_*_to_buffer`` call per batch and per dictionary.

Writing: records are stored plain until the first dictionary exists; :meth:`LogFrames.install`
publishes a new one only after its own transaction committed, so a frame never names a
dictionary that a reader of the same snapshot cannot find. Dictionaries are never deleted: old
records keep theirs. When a dictionary is trained is :mod:`store._training`'s business.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import zstandard

from domain.errors import CorruptLog

if TYPE_CHECKING:
    from store._env import Database, Txn

__all__ = [
    "DICTIONARY_BYTES",
    "Dictionary",
    "LogFrames",
    "compressed_size",
    "train",
]

DICTIONARY_BYTES: Final = 16_384
"""Size of a trained dictionary (measured: 8-64 KiB compress order events alike)."""
_LEVEL: Final = 3

_MAGIC: Final = b"\x28"  # first byte of the zstd frame magic (28 b5 2f fd)
_FIRST: Final = operator.itemgetter(slice(0, 1))  # b"" for an empty (corrupt) value
_MULTI: Final = zstandard.backend == "cext"  # the batch calls exist in the C backend only
_ENCODER: Final = msgspec.msgpack.Encoder()
_ROW: Final = msgspec.msgpack.Decoder(tuple[int, bytes])
_NO_FRAMES: Final = 2**64  # above every position: a log without dictionaries is all plain
_MAX_RECORD: Final = 1 << 30  # no record is larger (events are refused long before that)


class Dictionary(msgspec.Struct, frozen=True):
    """One trained dictionary.

    Attributes:
        dict_id: Its id (the ``dicts`` key; every frame it compressed names it).
        trained_at: The head its samples were taken up to.
        data: The zstd dictionary.
    """

    dict_id: int
    trained_at: int
    data: bytes

    def key(self) -> bytes:
        """Return its key in the ``dicts`` table."""
        return self.dict_id.to_bytes(4, "big")

    def row(self) -> bytes:
        """Return its value in the ``dicts`` table."""
        return _ENCODER.encode((self.trained_at, self.data))


def _compressor(dictionary: Dictionary) -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters.from_level(
        _LEVEL, write_checksum=False, write_content_size=True, write_dict_id=True
    )
    return zstandard.ZstdCompressor(dict_data=_zstd_dict(dictionary), compression_params=params)


def _zstd_dict(dictionary: Dictionary) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(dictionary.data, dict_type=zstandard.DICT_TYPE_FULLDICT)


def _compress(compressor: zstandard.ZstdCompressor, values: Sequence[bytes]) -> list[bytes]:
    if _MULTI:
        return _segments(compressor.multi_compress_to_buffer(_buffers(values)))
    return [compressor.compress(value) for value in values]


def _buffers(values: Sequence[bytes]) -> list[bytes | bytearray | memoryview]:
    return list(values)


def _segments(collection: zstandard.BufferWithSegmentsCollection) -> list[bytes]:
    # The collection indexes every segment of its buffers; bytes() copies one out.
    return [collection[index].tobytes() for index in range(len(collection))]


def train(samples: Sequence[bytes], dict_id: int, trained_at: int) -> Dictionary | None:
    """Return a dictionary trained on ``samples`` (plain envelopes), or None if zstd cannot.

    Training takes ~100-200 ms for 8,000 samples; zstd releases the GIL meanwhile.
    """
    try:
        data = zstandard.train_dictionary(DICTIONARY_BYTES, list(samples), dict_id=dict_id)
    except zstandard.ZstdError:
        return None  # too few or too uniform samples: stay as we are
    return Dictionary(dict_id, trained_at, data.as_bytes())


def compressed_size(dictionary: Dictionary | None, samples: Sequence[bytes]) -> int:
    """Return the bytes ``samples`` take compressed with ``dictionary`` (plain with None)."""
    if dictionary is None:
        return sum(map(len, samples))
    return sum(map(len, _compress(_compressor(dictionary), samples)))


class LogFrames:
    """The dictionaries of one log environment: compresses appends, expands reads.

    Safe from any thread: the compressor is used by the single writer (inside the write
    transaction), and decompressors are lent from a pool per dictionary (zstd contexts are not
    shared by two threads at once).

    Args:
        dicts_db: Returns the ``dicts`` table, or None while it does not exist (a follower of a
            directory whose writer has not created it yet).
        complete: This object sees every dictionary of its log: it loaded them all and installs
            each new one itself (the store that writes the log). Reads of positions up to the
            first dictionary's ``trained_at`` then skip the per-record check (all plain: records
            are compressed only after a dictionary is installed). A follower is not complete.
    """

    def __init__(
        self,
        dicts_db: Callable[[], Database | None],
        *,
        complete: bool = False,
    ) -> None:
        self._dicts_db = dicts_db
        self._complete = complete
        # Positions up to this one are plain (complete objects only; 0: check every record).
        self._plain_up_to = _NO_FRAMES if complete else 0
        self._known: dict[int, Dictionary] = {}
        self._pools: dict[int, list[zstandard.ZstdDecompressor]] = {}
        self._lock = threading.Lock()  # guards _known and _pools' creation, not their use
        self._writing: tuple[Dictionary, zstandard.ZstdCompressor] | None = None

    @property
    def current(self) -> Dictionary | None:
        """The dictionary new records are compressed with (None: they are stored plain)."""
        writing = self._writing
        return None if writing is None else writing[0]

    def load(self, txn: Txn) -> None:
        """Read every dictionary of the table; compress new records with the newest."""
        db = self._dicts_db()
        if db is None:
            return
        newest: Dictionary | None = None
        for key, value in txn.cursor(db=db):
            dictionary = self._decode(int.from_bytes(key, "big"), bytes(value))
            with self._lock:
                self._known[dictionary.dict_id] = dictionary
            newest = dictionary
        if newest is not None:
            self._writing = (newest, _compressor(newest))
        self._mark_plain()

    def install(self, dictionary: Dictionary) -> None:
        """Compress new records with ``dictionary``, whose row has committed."""
        with self._lock:
            self._known[dictionary.dict_id] = dictionary
        self._mark_plain()
        self._writing = (dictionary, _compressor(dictionary))

    def _mark_plain(self) -> None:
        if self._complete:
            with self._lock:
                known = list(self._known.values())
            self._plain_up_to = min((d.trained_at for d in known), default=_NO_FRAMES)

    def compress(self, values: list[bytes]) -> list[bytes]:
        """Return ``values`` compressed with the current dictionary (as they are without one)."""
        writing = self._writing
        if writing is None or not values:
            return values
        return _compress(writing[1], values)

    def expand(self, txn: Txn, values: list[bytes], positions: Sequence[int]) -> list[bytes]:
        """Return the plain envelopes of ``values`` (log values at ``positions``, read in ``txn``).

        Raises:
            CorruptLog: A frame names a dictionary the table does not hold, or does not
                decompress; ``.position`` names it.
        """
        if not values or positions[-1] <= self._plain_up_to or _MAGIC not in map(_FIRST, values):
            return values
        firsts = list(map(_FIRST, values))
        if firsts.count(_MAGIC) == len(values):
            dict_id = _frame_dict(values[0], positions[0])
            try:
                return self._decompress(txn, dict_id, values, positions[0])
            except (zstandard.ZstdError, MemoryError):
                pass  # several dictionaries in this batch, or a bad frame: one by one below
        return self._expand_mixed(txn, values, positions, firsts)

    def expand_one(self, txn: Txn, value: bytes, position: int) -> bytes:
        """Return the plain envelope of one log value (see :meth:`expand`)."""
        if value[:1] != _MAGIC:
            return value
        return self.expand(txn, [value], [position])[0]

    def _expand_mixed(
        self, txn: Txn, values: list[bytes], positions: Sequence[int], firsts: list[bytes]
    ) -> list[bytes]:
        out = list(values)
        groups: dict[int, list[int]] = {}
        for index, first in enumerate(firsts):
            if first == _MAGIC:
                groups.setdefault(_frame_dict(values[index], positions[index]), []).append(index)
        for dict_id, indexes in groups.items():
            frames = [values[index] for index in indexes]
            try:
                plain = self._decompress(txn, dict_id, frames, positions[indexes[0]])
            except (zstandard.ZstdError, MemoryError):
                plain = [
                    self._one(txn, dict_id, values[index], positions[index]) for index in indexes
                ]
            for index, value in zip(indexes, plain, strict=True):
                out[index] = value
        return out

    def _one(self, txn: Txn, dict_id: int, frame: bytes, position: int) -> bytes:
        # A damaged header may claim any size: zstd would try to allocate it (MemoryError).
        size = zstandard.get_frame_parameters(frame).content_size
        if size > _MAX_RECORD:
            raise CorruptLog(position, f"the compressed record claims {size} bytes: damaged")
        try:
            return self._decompress(txn, dict_id, [frame], position)[0]
        except zstandard.ZstdError as error:
            reason = f"the compressed record does not expand ({error})"
            raise CorruptLog(position, reason) from error

    def _decompress(
        self, txn: Txn, dict_id: int, frames: list[bytes], position: int
    ) -> list[bytes]:
        pool = self._pools.get(dict_id)
        if pool is None:
            pool = self._new_pool(txn, dict_id, position)
        try:
            decompressor = pool.pop()
        except IndexError:
            decompressor = self._decompressor(dict_id)
        try:
            if _MULTI:
                return _segments(decompressor.multi_decompress_to_buffer(_buffers(frames)))
            return [decompressor.decompress(frame) for frame in frames]
        finally:
            pool.append(decompressor)

    def _new_pool(self, txn: Txn, dict_id: int, position: int) -> list[zstandard.ZstdDecompressor]:
        with self._lock:
            known = dict_id in self._known
        if not known:
            db = self._dicts_db()
            raw = None if db is None else txn.get(dict_id.to_bytes(4, "big"), db=db)
            if raw is None:
                where = "not stored" if db is not None else "and no dictionary table is open"
                raise CorruptLog(
                    position, f"the record names compression dictionary {dict_id}, {where}"
                )
            dictionary = self._decode(dict_id, bytes(raw))
            with self._lock:
                self._known[dict_id] = dictionary
        with self._lock:
            return self._pools.setdefault(dict_id, [])

    def _decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        with self._lock:
            dictionary = self._known[dict_id]
        # A dictionary object per decompressor: zstd digests it on first use, not thread-safely.
        return zstandard.ZstdDecompressor(dict_data=_zstd_dict(dictionary))

    @staticmethod
    def _decode(dict_id: int, raw: bytes) -> Dictionary:
        try:
            trained_at, data = _ROW.decode(raw)
        except msgspec.DecodeError as error:
            reason = f"compression dictionary {dict_id} is unreadable ({error})"
            raise CorruptLog(0, reason) from error
        return Dictionary(dict_id, trained_at, data)


def _frame_dict(frame: bytes, position: int) -> int:
    try:
        dict_id: Any = zstandard.get_frame_parameters(frame).dict_id
    except zstandard.ZstdError as error:
        reason = f"the compressed record's header is unreadable ({error})"
        raise CorruptLog(position, reason) from error
    return int(dict_id)
