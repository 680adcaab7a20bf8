"""View snapshots on disk: a framed, versioned blob per view, written atomically.

A memory view (or any view kept in memory) snapshots its state with the log position it is
consistent with, so that opening the engine loads the snapshot and replays only the tail.

Frame: ``MAGIC`` + a msgpack header (format, view name, model version, position, payload length,
CRC32 of the header's other fields and the payload) + the payload. A snapshot is only ever
*trusted*, never repaired: a wrong magic, format, name or model version, a short file or a CRC
mismatch makes :func:`decode_snapshot` return None, and the caller replays from position 0
instead. So a snapshot written by another read-model version (or torn by a crash mid-write) is
discarded, never misread.

Files are written to ``<name>.snapshot.tmp``, fsynced, then renamed over ``<name>.snapshot`` and
the directory fsynced: a reader sees the old snapshot or the new one, whole. The fsync runs on the
projector's thread, never on a command's path.
"""

from __future__ import annotations

import os
import pathlib
import zlib
from typing import Final

import msgspec

from store import get_logger
from views._chunked import Parts

__all__ = [
    "SNAPSHOT_FORMAT",
    "SnapshotHeader",
    "decode_snapshot",
    "encode_snapshot",
    "frame_snapshot",
    "read_snapshot_file",
    "snapshot_path",
    "write_snapshot_file",
]

log = get_logger(__name__)

MAGIC: Final = b"OLVS"  # orderlog view snapshot
SNAPSHOT_FORMAT: Final = 1
"""Version of the frame itself (bumped if the header's layout ever changes)."""


class SnapshotHeader(msgspec.Struct, frozen=True, array_like=True):
    """What a snapshot says about itself.

    Attributes:
        format: :data:`SNAPSHOT_FORMAT` of the writer.
        view: The view's name.
        model_version: The read model's version (``getattr(model, "version", 1)``).
        position: The last log position the state includes.
        length: Payload length in bytes.
        crc: CRC32 of the other fields and the payload (a bit flipped in the position must
            not pass: the view would skip or re-apply events).
    """

    format: int
    view: str
    model_version: int
    position: int
    length: int
    crc: int


_header_decoder: Final = msgspec.msgpack.Decoder(SnapshotHeader)
_encode: Final = msgspec.msgpack.encode


def _checksum(
    format_: int, view: str, model_version: int, position: int, payload: Parts, *, length: int
) -> int:
    crc = zlib.crc32(_encode((format_, view, model_version, position, length)))
    for part in payload:  # zlib releases the GIL over a big part
        crc = zlib.crc32(part, crc)
    return crc


def encode_snapshot(view: str, model_version: int, position: int, payload: bytes) -> bytes:
    """Frame ``payload`` (the encoded state at ``position``) with its header."""
    return b"".join(frame_snapshot(view, model_version, position, [payload]))


def frame_snapshot(view: str, model_version: int, position: int, payload: Parts) -> Parts:
    """Frame ``payload`` (the encoded state at ``position``, in parts) with its header.

    The parts are not copied: joined, the result is :func:`encode_snapshot`'s bytes.
    """
    length = sum(len(part) for part in payload)  # every part is bytes, or a view of bytes
    header = SnapshotHeader(
        format=SNAPSHOT_FORMAT,
        view=view,
        model_version=model_version,
        position=position,
        length=length,
        crc=_checksum(SNAPSHOT_FORMAT, view, model_version, position, payload, length=length),
    )
    raw = _encode(header)
    return [MAGIC + len(raw).to_bytes(4, "big") + raw, *payload]


def decode_snapshot(data: bytes, view: str, model_version: int) -> tuple[int, memoryview] | None:
    """Return ``(position, payload)`` if ``data`` is a whole snapshot of this view and version.

    Returns None (and logs why) for anything else: another view, another model version, another
    frame format, a torn or corrupted file.
    """
    reason = ""
    if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
        reason = "not a view snapshot"
    else:
        size = int.from_bytes(data[4:8], "big")
        try:
            header = _header_decoder.decode(data[8 : 8 + size])
        except (msgspec.DecodeError, msgspec.ValidationError):
            reason = "unreadable header"
        else:
            payload = memoryview(data)[8 + size :]  # a slice of bytes would copy ~100 MB
            if header.format != SNAPSHOT_FORMAT:
                reason = f"frame format {header.format}, expected {SNAPSHOT_FORMAT}"
            elif header.view != view:
                reason = f"snapshot of view {header.view!r}"
            elif header.model_version != model_version:
                reason = (
                    f"written by read-model version {header.model_version}, "
                    f"this is version {model_version}"
                )
            elif header.length != len(payload) or header.crc != _checksum(
                header.format,
                header.view,
                header.model_version,
                header.position,
                [payload],
                length=len(payload),
            ):
                reason = "torn or corrupted snapshot"
            else:
                return header.position, payload
    log.warning("view_snapshot_discarded", view=view, reason=reason)
    return None


def snapshot_path(directory: pathlib.Path, view: str) -> pathlib.Path:
    """Return the file a view's snapshot lives in (the name is hex-escaped: any view name works)."""
    return directory / f"{view.encode().hex()}.snapshot"


def write_snapshot_file(directory: pathlib.Path, view: str, data: bytes | Parts) -> pathlib.Path:
    """Write ``data`` (bytes, or parts in order) as ``view``'s snapshot atomically and durably.

    Returns:
        The snapshot file's path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = snapshot_path(directory, view)
    temporary = final.with_name(final.name + ".tmp")  # <hex>.snapshot.tmp, as documented
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        for part in [data] if isinstance(data, bytes) else data:
            remaining = memoryview(part)
            while remaining:
                written = os.write(fd, remaining)  # releases the GIL
                remaining = remaining[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(final)
    # The rename itself must survive a power loss, or an old snapshot could come back.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def read_snapshot_file(directory: pathlib.Path, view: str) -> bytes | None:
    """Return the bytes of ``view``'s snapshot file, or None if there is none."""
    try:
        return snapshot_path(directory, view).read_bytes()
    except FileNotFoundError:
        return None
