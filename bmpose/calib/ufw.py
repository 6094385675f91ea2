"""The LMDB calibration sets of Sophon's NNTC toolchain (ufw / ufwio format): writer and reader.

Format (checked bit-for-bit against the vendor's ufwio 0.0.2 by tests/convert/test_nntc.py):

* key: `"{:0>10d}__{:1}".format(index, "")`: ufwio's `LMDB_Dataset.put` passes an empty key, which `{:1}`
  pads to one space, so record 3 is `b"0000000003__ "` (trailing space). LMDB's byte order then keeps records
  in insertion order.
* value: a serialized proto2 `ufw.Datum`: caffe's Datum fields 1-7 (channels, height, width, data, label,
  float_data, encoded) plus `shape` (8, a `ufw.BlobShape` whose `dim` is a packed repeated int64) and `dtype`
  (9, FP32=0 FP16=1 INT8=2 UINT8=3 INT16=4 UINT16=5 INT32=6 UINT32=7; proto default UINT8). float32 goes to
  `float_data` (field 6, not packed: one tag per value); every other dtype to `data` (field 4) as raw
  little-endian bytes. ufwio always writes dtype, FP32 (0) included.
* record shape: stored as given. NNTC's Data layer wants one network input per record, batch dimension
  included (the vendor's docs and mmpose/HRNet sample put 1xCxHxW), so a CxHxW array gets a leading 1.

Why protobuf is encoded by hand: the schema is two tiny messages; ufwio's generated module wants protobuf 3.19
(onnx here needs newer) and ufwio itself does not import on Python >= 3.10. numpy + lmdb only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from bmpose.errors import BmposeError
from bmpose.manifest import atomic_dir

KEY_FORMAT = "{:0>10d}__{:1}"

# ufw.BlobProto.Dtype
FP32, FP16, INT8, UINT8, INT16, UINT16, INT32, UINT32 = range(8)
_DTYPE_CODE = {np.dtype(t): code for code, t in enumerate(
    (np.float32, np.float16, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32))}
_CODE_DTYPE = {v: k.newbyteorder("<") for k, v in _DTYPE_CODE.items()}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5      # protobuf wire types
# one non-packed float_data element: tag byte (field 6, wire type 5) then the float's 4 bytes
_FLOAT_ELEM = np.dtype([("tag", "u1"), ("value", "<f4")])
_FLOAT_TAG = (6 << 3) | _I32

_BATCH = 64            # records per write transaction
_MAP_SIZE = 64 << 20   # initial LMDB map size; doubled whenever it is full


# ------------------------------------------------------------------------------------------------ protobuf

def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64    # negative int64/enum values are 10-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint((field << 3) | _LEN) + _varint(len(payload)) + payload


def encode_datum(arr: np.ndarray) -> bytes:
    """One array as ufw.Datum bytes: exactly ufwio's `array_to_datum(arr).SerializeToString()`."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        raise BmposeError("ufw record: an array needs at least one dimension")
    code = _DTYPE_CODE.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise BmposeError(f"ufw record: dtype {arr.dtype} cannot be stored (use float32, float16 or an "
                          f"8/16/32-bit integer)")
    if code == FP32:
        elems = np.empty(arr.size, dtype=_FLOAT_ELEM)
        elems["tag"] = _FLOAT_TAG
        elems["value"] = arr.ravel()
        body = elems.tobytes()
    else:
        body = _len_field(4, np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes())
    shape = _len_field(1, b"".join(_varint(int(d)) for d in arr.shape))   # BlobShape.dim, packed
    # field order as protobuf serializes them: data/float_data, shape, dtype
    return body + _len_field(8, shape) + _varint((9 << 3) | _VARINT) + _varint(code)


def _decode_shape(buf: bytes) -> list[int]:
    dims, pos = [], 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _LEN:
            size, pos = _read_varint(buf, pos)
            sub, pos = buf[pos:pos + size], pos + size
            if field == 1:                # packed dims (what protoc writes)
                p = 0
                while p < len(sub):
                    d, p = _read_varint(sub, p)
                    dims.append(_signed64(d))
        elif wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            if field == 1:                # a parser must also accept unpacked repeated dims
                dims.append(_signed64(value))
        else:
            pos += 4 if wire == _I32 else 8
    return dims


def decode_datum(buf: bytes) -> np.ndarray:
    """A ufw.Datum's array, as ufwio's `datum_to_array` reads it (legacy C,H,W shape when `shape` is absent).
    Raises ValueError on a malformed record."""
    buf = bytes(buf)
    shape, chw, data, floats, code = None, [0, 0, 0], b"", [], UINT8
    pos = 0
    while pos < len(buf):
        if buf[pos] == _FLOAT_TAG:        # a run of non-packed floats: read it vectorised, not one by one
            n = (len(buf) - pos) // _FLOAT_ELEM.itemsize
            elems = np.frombuffer(buf, dtype=_FLOAT_ELEM, count=n, offset=pos)
            stop = np.flatnonzero(elems["tag"] != _FLOAT_TAG)
            k = int(stop[0]) if stop.size else n
            if k == 0:
                raise ValueError("truncated float_data")
            floats.append(elems["value"][:k])
            pos += k * _FLOAT_ELEM.itemsize
            continue
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            if field in (1, 2, 3):
                chw[field - 1] = _signed64(value)
            elif field == 9:
                code = value
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"truncated field {field}")
            value, pos = buf[pos:pos + size], pos + size
            if field == 8:
                shape = _decode_shape(value)
            elif field == 4:
                data = value              # proto2: the last occurrence wins
            elif field == 6:
                if size % 4:
                    raise ValueError("packed float_data is not a whole number of floats")
                floats.append(np.frombuffer(value, dtype="<f4"))
        elif wire in (_I32, _I64):
            pos += 4 if wire == _I32 else 8
        else:
            raise ValueError(f"unsupported wire type {wire} for field {field}")
        if pos > len(buf):
            raise ValueError(f"truncated field {field}")
    shape = chw if shape is None else shape
    if len(data):
        if code not in _CODE_DTYPE:
            raise ValueError(f"unknown ufw dtype code {code}")
        arr = np.frombuffer(data, dtype=_CODE_DTYPE[code])
    else:
        arr = np.concatenate(floats) if floats else np.zeros(0, "<f4")
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"record holds {arr.size} values but its shape {list(shape)} needs {int(np.prod(shape))}")
    return arr.reshape(shape).astype(arr.dtype.newbyteorder("="))


# ---------------------------------------------------------------------------------------------------- LMDB

def _put_batch(env, batch: list) -> None:
    """One transaction per batch; a full map is doubled and the batch retried."""
    import lmdb

    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in batch:
                    txn.put(key, value, append=True)   # keys arrive sorted: append is exact and fast
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def write_ufw_lmdb(path, arrays: Iterable[np.ndarray], add_batch_dim: bool = True,
                   overwrite: bool = False) -> int:
    """Write each array as one record of a new ufw LMDB directory at `path`; return the record count.

    A CxHxW array gets a leading batch dimension 1 when `add_batch_dim`; others are stored as given. Built
    in a temporary directory beside `path` and renamed into place only once complete.
    """
    import lmdb

    path = Path(path)
    if path.exists() and not overwrite:
        raise BmposeError(f"{path}: already exists (not replacing it)")
    count = 0
    with atomic_dir(path, keep_failed=False) as tmp:
        env = lmdb.open(str(tmp), map_size=_MAP_SIZE, subdir=True, lock=False)
        try:
            batch = []
            for arr in arrays:
                arr = np.asarray(arr)
                if add_batch_dim and arr.ndim == 3:
                    arr = arr[np.newaxis]
                batch.append((KEY_FORMAT.format(count, "").encode("ascii"), encode_datum(arr)))
                count += 1
                if len(batch) >= _BATCH:
                    _put_batch(env, batch)
                    batch = []
            if batch:
                _put_batch(env, batch)
            env.sync(True)
        finally:
            env.close()
        if count == 0:
            raise BmposeError(f"{path}: no arrays to write (an empty calibration set)")
    return count


def read_ufw_lmdb_items(path) -> Iterator[tuple[bytes, np.ndarray]]:
    """(key, array) of every record, in key order (as ufwio.lmdb_data yields them)."""
    import lmdb

    path = Path(path)
    if not (path / "data.mdb").is_file():
        raise BmposeError(f"{path}: not an LMDB (no data.mdb)")
    env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                try:
                    arr = decode_datum(value)
                except ValueError as e:
                    raise BmposeError(f"{path}: record {bytes(key)!r} is not a ufw Datum ({e})") from None
                yield bytes(key), arr
    finally:
        env.close()


def read_ufw_lmdb(path) -> Iterator[np.ndarray]:
    for _, arr in read_ufw_lmdb_items(path):
        yield arr


def record_summary(path) -> tuple[int, set]:
    """(record count, {(dtype name, shape)}) of a ufw LMDB: what a consumer checks before calibrating."""
    count, kinds = 0, set()
    for arr in read_ufw_lmdb(path):
        count += 1
        kinds.add((arr.dtype.name, tuple(arr.shape)))
    return count, kinds
