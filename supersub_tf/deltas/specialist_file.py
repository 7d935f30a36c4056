"""One specialist's stored file: a single versioned, checksummed blob of its arrays.

A stored system (:mod:`supersub_tf.deltas.storage`) keeps one such file per specialist,
``specialists/<superclass>.delta``. Its layout, all integers little-endian::

    magic       8 bytes   b"SSDELTA\\0"
    version     uint16    1
    flags       uint16    0 (reserved)
    header_len  uint32    H
    header      H bytes   UTF-8 JSON: superclass, superclass_index, subclasses (wnids in
                          head order), bits, catch_all, trunk_fingerprint (the trunk the
                          deltas were trained on), layout (a digest), payload_bytes,
                          compression (``lzma`` or ``none``)
    payload               every array's raw bytes, back to back, in layout order; with
                          ``lzma``, compressed (LZMA2, raw stream, preset 6)
    checksum    32 bytes  sha256 of everything before it

The *layout* is the ordered list of ``(name, dtype, shape)`` of the arrays; it is not
written out, because the system's manifest already states it (the delta layers with
their kernel shapes, the owned layers with their weight shapes, the bit width): the
header stores only a 16-hex-digit digest of it, and reading needs the layout it was
written with. Why so lean: at 4 bits a small network's specialist is ~40 kB, and the
``.npz`` of format 2 spent 0.05 generalists per specialist on per-array headers and zip
entries, a third of the specialist. Here the fixed overhead is about 300 bytes.

Compression: trained k-bit deltas are far from uniform (at 2 bits nine codes in ten
are zero, at 4 bits the codes carry about 3.3 bits of entropy), so the payload is
LZMA-compressed whenever that makes it smaller (it saves 23% of a 4-bit specialist and
55% of a 2-bit one on the default run; decompressing takes milliseconds). The arrays
read back are the same bytes either way.

The file checks itself (the trailing sha256), so a blob copied out of its system is
still verifiable; the manifest also records its size and sha256. The array names are
those of the package's loaders: ``delta/<layer>/codes`` (uint8, the k-bit codes packed
by :mod:`supersub_tf.deltas.packing`), ``delta/<layer>/scales`` (float32, one per
output channel), ``delta/<layer>/values`` (float32, float deltas) and
``owned/<layer>/<i>`` (float32, the weights the specialist owns outright).

It needs only numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from supersub_tf.atomic import atomic_write_bytes
from supersub_tf.errors import StorageError

MAGIC = b"SSDELTA\x00"
VERSION = 1
SUFFIX = ".delta"
_PREFIX = struct.Struct("<8sHHI")  # magic, version, flags, header length
_CHECKSUM_BYTES = 32
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]
COMPRESSIONS = ("lzma", "none")

ArraySpec = tuple[str, str, tuple[int, ...]]  # name, numpy dtype name, shape


def layout_digest(specs: Sequence[ArraySpec]) -> str:
    """16 hex digits identifying an ordered array layout (names, dtypes, shapes)."""
    canonical = json.dumps([[name, dtype, [int(d) for d in shape]]
                            for name, dtype, shape in specs], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _nbytes(spec: ArraySpec) -> int:
    _, dtype, shape = spec
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def encode_specialist(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                      specs: Sequence[ArraySpec], compress: bool = True) -> bytes:
    """The bytes of a specialist file (see the module docstring).

    Args:
        meta: JSON-ready facts about the specialist (superclass, index, subclasses, ...).
        arrays: Name -> array, exactly the names of ``specs``.
        specs: The layout: the arrays' order, dtypes and shapes.
        compress: LZMA-compress the payload when that makes it smaller.

    Raises:
        StorageError: When the arrays are not exactly the layout's (name, dtype, shape).
    """
    names = [name for name, _, _ in specs]
    if sorted(arrays) != sorted(names):
        raise StorageError(f"specialist {meta.get('superclass')!r}: arrays {sorted(arrays)} "
                           f"are not the layout's {sorted(names)}")
    chunks = []
    for name, dtype, shape in specs:
        array = np.asarray(arrays[name])
        if array.dtype != np.dtype(dtype) or array.shape != tuple(shape):
            raise StorageError(f"specialist {meta.get('superclass')!r}: array {name} is "
                               f"{array.dtype} {array.shape}, the layout says {dtype} "
                               f"{tuple(shape)}")
        chunks.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                         copy=False).tobytes())
    payload = b"".join(chunks)
    stored, compression = payload, "none"
    if compress:
        packed = lzma.compress(payload, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        if len(packed) < len(payload):
            stored, compression = packed, "lzma"
    header = json.dumps({**meta, "layout": layout_digest(specs), "payload_bytes": len(payload),
                         "compression": compression},
                        separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body = _PREFIX.pack(MAGIC, VERSION, 0, len(header)) + header + stored
    return body + hashlib.sha256(body).digest()


def write_specialist_file(path: str | os.PathLike, meta: Mapping[str, Any],
                          arrays: Mapping[str, np.ndarray], specs: Sequence[ArraySpec],
                          compress: bool = True) -> None:
    """Writes a specialist file atomically (a failure leaves ``path`` as it was)."""
    atomic_write_bytes(path, encode_specialist(meta, arrays, specs, compress))


def decode_specialist(data: bytes, specs: Sequence[ArraySpec], source: str
                      ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parses and verifies the bytes of a specialist file.

    Args:
        data: The file's bytes.
        specs: The layout the system's manifest implies.
        source: The file's name, for the messages.

    Returns:
        ``(meta, arrays)``: the header's facts and the arrays by name (read-only views
        of the decompressed payload).

    Raises:
        StorageError: Naming ``source``, when the file is not a specialist file, is of an
            unknown version, is truncated or corrupted (checksum), or was written for
            another layout than ``specs``.
    """
    if len(data) < _PREFIX.size + _CHECKSUM_BYTES or data[:len(MAGIC)] != MAGIC:
        raise StorageError(f"{source}: not a supersub specialist file (no {MAGIC!r} header)")
    _, version, _, header_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise StorageError(f"{source}: specialist file version {version}; this code reads "
                           f"version {VERSION}")
    body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if hashlib.sha256(body).digest() != checksum:
        raise StorageError(f"{source}: checksum mismatch (the file is truncated or corrupted)")
    start = _PREFIX.size + header_len
    try:
        meta = json.loads(body[_PREFIX.size:start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StorageError(f"{source}: unreadable header ({err})") from None
    wanted = layout_digest(specs)
    if not isinstance(meta, dict) or meta.get("layout") != wanted:
        found = meta.get("layout") if isinstance(meta, dict) else None
        raise StorageError(f"{source}: written for another array layout (digest {found}) than "
                           f"the manifest's delta layers and owned layers imply ({wanted})")
    payload = body[start:]
    meta["stored_payload_bytes"] = len(payload)  # what the file spends on it (not stored)
    if meta.get("compression", "none") == "lzma":
        try:
            payload = lzma.decompress(payload, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        except lzma.LZMAError as err:
            raise StorageError(f"{source}: payload does not decompress ({err})") from None
    elif meta.get("compression", "none") != "none":
        raise StorageError(f"{source}: unknown compression {meta.get('compression')!r} "
                           f"(this code reads {', '.join(COMPRESSIONS)})")
    sizes = [_nbytes(spec) for spec in specs]
    if len(payload) != sum(sizes) or meta.get("payload_bytes") != sum(sizes):
        raise StorageError(f"{source}: payload of {len(payload)} bytes, the layout needs "
                           f"{sum(sizes)}")
    arrays, offset = {}, 0
    for (name, dtype, shape), size in zip(specs, sizes):
        arrays[name] = np.frombuffer(payload, np.dtype(dtype).newbyteorder("<"), count=size
                                     // np.dtype(dtype).itemsize, offset=offset).reshape(shape)
        offset += size
    return meta, arrays


def read_specialist_file(path: str | os.PathLike, specs: Sequence[ArraySpec]
                         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Reads and verifies a specialist file (see :func:`decode_specialist`).

    Raises:
        StorageError: When the file cannot be read or fails :func:`decode_specialist`.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise StorageError(f"{path}: unreadable specialist file ({err})") from None
    return decode_specialist(data, specs, str(path))
