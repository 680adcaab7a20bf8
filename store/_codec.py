"""The codec: event types by stable tag, envelopes, and upcasters for old schema versions.

Wire format of a log value: a msgpack array (position, stream_id, stream_type, version, tag,
schema_version, timestamp, command_id, event), where ``event`` is the msgspec encoding of the
tagged event Struct. An array, not a map, keeps records ~40% smaller and faster to decode.

The fast read path decodes whole batches in one msgspec call straight into (a subclass of)
:class:`RecordedEvent`, with ``event`` typed as the tagged union of every registered type: no
per-record Python work. Anything it cannot handle (unknown tag, old schema, bad bytes) falls back
to the per-record slow path, which upcasts or raises :class:`CorruptLog` naming the position.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Union

import msgspec

from domain.errors import CorruptLog
from store._records import RecordedEvent

__all__ = ["Codec", "Upcaster"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns an event payload (its fields as a dict, without the tag field) of schema ``n`` into
schema ``n + 1``."""

# msgpack array header for up to 2**32 - 1 elements (type 0xdd + 4-byte big-endian count).
_ARRAY32: Final = b"\xdd"
_POSITION: Final = operator.attrgetter("position")


class _RawRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    # The envelope with the payload left undecoded: the slow path's first step.
    position: int
    stream_id: str
    stream_type: str
    version: int
    tag: str
    schema_version: int
    timestamp: int
    command_id: str
    event: msgspec.Raw


class _NoEvent(msgspec.Struct, tag="\x00no-event"):
    # Matches no stored tag: the fast decoder of an empty codec rejects every record.
    pass


class _Fast:
    """Decoders built for one set of registered types; rebuilt when registrations change."""

    __slots__ = ("many", "needs_schema_check", "one")

    def __init__(self, types: Sequence[type[msgspec.Struct]], versioned: bool) -> None:
        # A subclass that only re-types ``event`` to the union: isinstance(x, RecordedEvent)
        # holds, and msgspec builds the records in C.
        # With nothing registered every record must fail over to the slow path (unknown tag).
        union: Any = Union[tuple(types)] if types else _NoEvent  # noqa: UP007 - runtime union
        wire = msgspec.defstruct(
            "RecordedEvent",
            [("event", union)],
            bases=(RecordedEvent,),
            array_like=True,
            frozen=True,
            gc=False,
        )
        self.one: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(wire)
        self.many: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(list[wire])  # type: ignore[valid-type]
        # Only when some type is past schema 1 can a record need upcasting while still fitting
        # the current type (e.g. a field added with a default); then records are checked.
        self.needs_schema_check = versioned


class Codec:
    """Maps event types to stable tags and schema versions; encodes and decodes log records.

    Encoders and decoders are built once (and rebuilt only after a new registration).

    Args:
        event_types: Event types to register at schema version 1.
    """

    def __init__(self, event_types: Iterable[type[msgspec.Struct]] = ()) -> None:
        self._types: dict[str, type[msgspec.Struct]] = {}
        self._tag_of: dict[type[msgspec.Struct], tuple[str, int]] = {}
        self._schema: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._payload_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._generic = msgspec.msgpack.Decoder()
        self._raw = msgspec.msgpack.Decoder(_RawRecord)
        self._fast: _Fast | None = None
        for event_type in event_types:
            self.register(event_type)

    def __reduce__(self) -> tuple[Any, ...]:
        # A projection process gets the engine's codec: its registrations and upcasters cross
        # (upcasters by reference, so module-level functions), its encoders are built anew.
        types = [(event_type, self._tag_of[event_type][1]) for event_type in self._types.values()]
        return (_rebuilt_codec, (types, dict(self._upcasters)))

    @property
    def event_types(self) -> tuple[type[msgspec.Struct], ...]:
        """The registered event types (the current shape of each tag)."""
        return tuple(self._types.values())

    @property
    def upcasters(self) -> tuple[Upcaster, ...]:
        """The registered upcasters."""
        return tuple(self._upcasters.values())

    # ------------------------------------------------------------ registration

    def register(self, event_type: type[msgspec.Struct], schema_version: int = 1) -> None:
        """Register ``event_type`` as the current shape of its tag.

        Args:
            event_type: A msgspec Struct with an explicit string ``tag``.
            schema_version: Its schema version (>= 1); older records are upcast to it.

        Raises:
            ValueError: The type has no explicit string tag, the tag is taken by another type,
                its tag field differs from the other types', or the version is below 1.
        """
        config = event_type.__struct_config__
        tag = config.tag
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"{event_type.__name__} needs an explicit str tag (tag='Name')")
        if schema_version < 1:
            raise ValueError(f"schema_version of {tag!r} must be >= 1, got {schema_version}")
        previous = self._types.get(tag)
        if previous is not None and previous is not event_type:
            raise ValueError(f"tag {tag!r} is already registered for {previous.__name__}")
        for other in self._types.values():
            if other.__struct_config__.tag_field != config.tag_field:
                raise ValueError(
                    f"{event_type.__name__} uses tag field {config.tag_field!r}, "
                    f"{other.__name__} uses {other.__struct_config__.tag_field!r}; "
                    "all event types must share one"
                )
            break
        self._types[tag] = event_type
        self._tag_of[event_type] = (tag, schema_version)
        self._schema[tag] = schema_version
        self._payload_decoders[tag] = msgspec.msgpack.Decoder(event_type)
        self._fast = None

    def register_upcaster(self, tag: str, from_version: int, upcast: Upcaster) -> None:
        """Register how to turn a ``tag`` payload of ``from_version`` into ``from_version + 1``.

        Upcasters chain on read: a v1 record of a v3 type passes through 1->2 and 2->3.

        Args:
            tag: The event tag.
            from_version: The schema version the upcaster reads.
            upcast: Takes the payload's fields (a dict without the tag field), returns the
                next version's fields.
        """
        self._upcasters[tag, from_version] = upcast

    def known_tags(self) -> frozenset[str]:
        """Return the tags of every registered event type."""
        return frozenset(self._types)

    def schema_version(self, tag: str) -> int:
        """Return the current schema version of ``tag`` (0 if it is not registered)."""
        return self._schema.get(tag, 0)

    # ------------------------------------------------------------ encoding

    def encode_event(self, event: msgspec.Struct) -> tuple[str, int, bytes]:
        """Return ``(tag, schema_version, payload)`` for a registered event.

        Raises:
            KeyError: The event's type is not registered.
        """
        tag, schema = self._tag_of[type(event)]
        return tag, schema, self._encoder.encode(event)

    def encode_record(  # noqa: PLR0917 - the hot path: positional like the envelope it builds
        self,
        position: int,
        stream_id: str,
        stream_type: str,
        version: int,
        event: msgspec.Struct,
        timestamp: int,
        command_id: str,
    ) -> bytes:
        """Return the log value of one event.

        Raises:
            KeyError: The event's type is not registered.
        """
        tag, schema = self._tag_of[type(event)]
        # A tuple encodes exactly like the array_like envelope and is far cheaper to build.
        return self._encoder.encode(
            (position, stream_id, stream_type, version, tag, schema, timestamp, command_id, event)
        )

    def tag_of(self, event: msgspec.Struct) -> tuple[str, int]:
        """Return ``(tag, schema_version)`` of a registered event.

        Raises:
            KeyError: The event's type is not registered.
        """
        return self._tag_of[type(event)]

    def is_registered(self, event: msgspec.Struct) -> bool:
        """Return True if ``event``'s type is registered."""
        return type(event) in self._tag_of

    # ------------------------------------------------------------ decoding

    def _fast_decoders(self) -> _Fast:
        fast = self._fast
        if fast is None:
            versioned = any(version != 1 for version in self._schema.values())
            fast = self._fast = _Fast(list(self._types.values()), versioned)
        return fast

    def decode_record(self, position: int, raw: bytes) -> RecordedEvent:
        """Decode one log value, upcasting old schema versions.

        Args:
            position: The record's global position (its log key), for errors and checks.
            raw: The stored bytes.

        Raises:
            CorruptLog: The bytes do not decode, the tag is unknown, the envelope names another
                position, or no upcaster chain leads to the current schema.
        """
        fast = self._fast_decoders()
        try:
            record: RecordedEvent = fast.one.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._decode_slow(position, raw)
        if record.position != position or (
            fast.needs_schema_check and record.schema_version != self._schema[record.tag]
        ):
            return self._decode_slow(position, raw)
        return record

    def decode_many(self, first_position: int, values: list[bytes]) -> list[RecordedEvent]:
        """Decode consecutive log values starting at ``first_position`` in one msgspec call.

        Raises:
            CorruptLog: A record is bad; ``.position`` names the first bad one.
        """
        count = len(values)
        if count == 0:
            return []
        fast = self._fast_decoders()
        # The values are msgpack arrays; prefixing an array header makes the whole batch one
        # msgpack document, so msgspec builds every record without a Python call per record.
        blob = b"".join((_ARRAY32, count.to_bytes(4, "big"), *values))
        try:
            records: list[RecordedEvent] = fast.many.decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return [self.decode_record(first_position + i, raw) for i, raw in enumerate(values)]
        # Every envelope must name its own key: catches values written under a wrong key.
        if list(map(_POSITION, records)) != list(range(first_position, first_position + count)):
            return [self.decode_record(first_position + i, raw) for i, raw in enumerate(values)]
        if fast.needs_schema_check:
            schema = self._schema
            for index, record in enumerate(records):
                if record.schema_version != schema[record.tag]:
                    records[index] = self._decode_slow(first_position + index, values[index])
        return records

    def decode_at(self, positions: list[int], values: list[bytes]) -> list[RecordedEvent]:
        """Decode log values whose positions are given (e.g. one stream's events).

        Raises:
            CorruptLog: A record is bad; ``.position`` names the first bad one.
        """
        if not values:
            return []
        fast = self._fast_decoders()
        blob = b"".join((_ARRAY32, len(values).to_bytes(4, "big"), *values))
        try:
            records: list[RecordedEvent] = fast.many.decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError):
            records = []
        if list(map(_POSITION, records)) != positions:
            return [self.decode_record(p, raw) for p, raw in zip(positions, values, strict=True)]
        if fast.needs_schema_check:
            schema = self._schema
            for index, record in enumerate(records):
                if record.schema_version != schema[record.tag]:
                    records[index] = self._decode_slow(positions[index], values[index])
        return records

    def stream_of(self, position: int, raw: bytes) -> tuple[str, str]:
        """Return ``(stream_id, stream_type)`` of one log value, leaving its event undecoded.

        Works for any record with a sound envelope, whatever its tag or schema version.

        Raises:
            CorruptLog: The envelope does not decode or names another position.
        """
        envelope = self._envelope(position, raw)
        return envelope.stream_id, envelope.stream_type

    def _envelope(self, position: int, raw: bytes) -> _RawRecord:
        try:
            envelope = self._raw.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise CorruptLog(position, f"undecodable envelope ({error})") from error
        if envelope.position != position:
            raise CorruptLog(position, f"the envelope says position {envelope.position}")
        return envelope

    def _decode_slow(self, position: int, raw: bytes) -> RecordedEvent:
        envelope = self._envelope(position, raw)
        tag = envelope.tag
        event_type = self._types.get(tag)
        if event_type is None:
            raise CorruptLog(position, f"unknown event tag {tag!r}")
        current = self._schema[tag]
        try:
            if envelope.schema_version == current:
                event = self._payload_decoders[tag].decode(envelope.event)
            else:
                event = self._upcast(position, event_type, envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise CorruptLog(position, f"undecodable {tag!r} payload ({error})") from error
        return RecordedEvent(
            envelope.position,
            envelope.stream_id,
            envelope.stream_type,
            envelope.version,
            tag,
            envelope.schema_version,
            envelope.timestamp,
            envelope.command_id,
            event,
        )

    def _upcast(
        self, position: int, event_type: type[msgspec.Struct], envelope: _RawRecord
    ) -> msgspec.Struct:
        tag = envelope.tag
        version = envelope.schema_version
        current = self._schema[tag]
        if version > current:
            raise CorruptLog(
                position, f"{tag!r} has schema {version}, newer than this codec's {current}"
            )
        payload = self._generic.decode(envelope.event)
        if not isinstance(payload, dict):
            raise CorruptLog(position, f"{tag!r} payload is not a map")
        payload.pop(event_type.__struct_config__.tag_field, None)
        while version < current:
            upcast = self._upcasters.get((tag, version))
            if upcast is None:
                raise CorruptLog(
                    position, f"no upcaster registered for {tag!r} from schema {version}"
                )
            payload = upcast(payload)
            version += 1
        # Re-encoding and decoding with the typed decoder gives exactly the normal decoding
        # rules (Decimal from str, datetimes...); this is the rare path.
        event: msgspec.Struct = self._payload_decoders[tag].decode(self._encoder.encode(payload))
        return event


def _rebuilt_codec(
    types: list[tuple[type[msgspec.Struct], int]], upcasters: dict[tuple[str, int], Upcaster]
) -> Codec:
    codec = Codec()
    for event_type, version in types:
        codec.register(event_type, version)
    for (tag, version), upcast in upcasters.items():
        codec.register_upcaster(tag, version, upcast)
    return codec
