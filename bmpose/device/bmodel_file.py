"""What a bmodel file says about itself, read without any Sophon tool: its chip.

A bmodel starts with a 64-byte header (magic 0xFF55AAEE, header size, flatbuffer size, binary size) followed
by the flatbuffer `Model` table of TPU-MLIR's bmodel.fbs, whose fourth field is the chip name ("BM1684X").
tests/device/test_device.py checks this reader against TPU-MLIR's `model_tool --chip` on every built bmodel.
"""
from __future__ import annotations

import struct

from ..pose.errors import PoseError

MAGIC = 0xFF55AAEE
CHIP_FIELD = 3   # Model { type, version, time, chip, net, ... }


def bmodel_chip(path) -> str:
    """The chip a bmodel was built for, upper case (e.g. "BM1684X"); PoseError naming the file otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or struct.unpack_from("<I", head)[0] != MAGIC:
                raise PoseError(f"{path}: not a bmodel (no bmodel header)")
            header_size, fb_size = struct.unpack_from("<II", head, 4)
            fh.seek(header_size)
            fb = fh.read(fb_size)
    except FileNotFoundError:
        raise PoseError(f"{path}: bmodel file not found") from None
    except OSError as e:
        raise PoseError(f"{path}: cannot read bmodel ({e.strerror})") from None
    try:
        return _string_field(fb, CHIP_FIELD).upper()
    except (struct.error, IndexError, UnicodeDecodeError, ValueError):
        raise PoseError(f"{path}: corrupt bmodel header (cannot read its chip name)") from None


def _string_field(fb: bytes, field: int) -> str:
    # flatbuffers: root table offset; the table's signed offset back to its vtable; the vtable's field
    # offsets (uint16, after its two size words); a string field holds an offset to (uint32 length, bytes)
    table = struct.unpack_from("<I", fb, 0)[0]
    vtable = table - struct.unpack_from("<i", fb, table)[0]
    vt_size = struct.unpack_from("<H", fb, vtable)[0]
    if 4 + 2 * field + 2 > vt_size:
        raise ValueError("field not present")
    off = struct.unpack_from("<H", fb, vtable + 4 + 2 * field)[0]
    if off == 0:
        raise ValueError("field not set")
    pos = table + off
    pos += struct.unpack_from("<I", fb, pos)[0]
    length = struct.unpack_from("<I", fb, pos)[0]
    if pos + 4 + length > len(fb):
        raise ValueError("string out of range")
    return fb[pos + 4:pos + 4 + length].decode("ascii")
