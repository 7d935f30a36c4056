"""Dense k-bit packing of delta codes: ``ceil(n * k / 8)`` bytes for ``n`` codes.

Codes are symmetric narrow-range integers in ``[-(2^(k-1) - 1), 2^(k-1) - 1]``; packing
shifts them to unsigned (``code + 2^(k-1) - 1``) and stores them little-endian, densely:
8 bits one per byte, 6 bits four in three bytes, 4 bits two per byte, 2 bits four per
byte. The stored system (:mod:`supersub_tf.deltas.storage`) and the SavedModel export
(which unpacks in the graph) use this one layout.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from supersub_tf.choices import check_bits
from supersub_tf.deltas.delta_set import levels


def _group(bits: int) -> tuple[int, int]:
    """``(values, bytes)`` of the smallest whole-byte group of ``bits``-bit values."""
    values = 8 // math.gcd(bits, 8)
    return values, values * bits // 8


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` values of ``bits`` bits take when packed densely."""
    return (count * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packs signed k-bit codes densely into bytes.

    Each code is shifted to unsigned (``code + 2^(k-1) - 1``, so the narrow range
    ``[-(2^(k-1) - 1), 2^(k-1) - 1]`` becomes ``[0, 2^k - 2]``) and the values are laid
    out little-endian, value ``i`` in bits ``i*k .. i*k + k - 1`` of the stream.

    Args:
        codes: Integer codes of any shape (flattened in C order).
        bits: Bits per code, 2 to 8.

    Returns:
        A uint8 array of ``ceil(codes.size * bits / 8)`` bytes.

    Raises:
        ValueError: When ``bits`` is outside 2..8, or the codes are not integers or lie
            outside the narrow range.
    """
    check_bits(bits)
    top = levels(bits)
    raw = np.asarray(codes).reshape(-1)
    if not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"{bits}-bit codes must be integers, got {raw.dtype}")
    if raw.size and (raw.min() < -top or raw.max() > top):
        raise ValueError(f"{bits}-bit codes must lie in [{-top}, {top}], got "
                         f"[{raw.min()}, {raw.max()}]")
    flat = raw.astype(np.int16)
    per_group, group_bytes = _group(bits)
    groups = -(-flat.size // per_group)
    unsigned = np.zeros(groups * per_group, np.uint8)  # uint8 keeps big layers cheap
    unsigned[:flat.size] = flat + top
    unsigned = unsigned.reshape(groups, per_group)
    words = np.zeros(groups, np.uint64)
    for i in range(per_group):
        words |= unsigned[:, i].astype(np.uint64) << np.uint64(i * bits)
    packed = np.stack([(words >> np.uint64(8 * j)) & np.uint64(0xFF)
                       for j in range(group_bytes)], axis=1).astype(np.uint8)
    # The padding values are zero, so every byte past ceil(n * k / 8) is zero: drop them.
    return packed.reshape(-1)[:packed_size(flat.size, bits)]


def unpack_codes(packed: np.ndarray, bits: int, shape: Iterable[int]) -> np.ndarray:
    """Inverts :func:`pack_codes`: int8 codes of ``shape`` from packed bytes.

    Raises:
        ValueError: When the byte count does not match ``shape`` at ``bits`` bits.
    """
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape, dtype=np.int64))
    packed = np.asarray(packed, np.uint8).reshape(-1)
    if packed.size != packed_size(count, bits):
        raise ValueError(f"{packed.size} packed bytes do not hold {count} {bits}-bit values "
                         f"(expected {packed_size(count, bits)})")
    per_group, group_bytes = _group(bits)
    groups = -(-count // per_group)
    padded = np.zeros(groups * group_bytes, np.uint8)
    padded[:packed.size] = packed
    padded = padded.reshape(groups, group_bytes)
    words = np.zeros(groups, np.uint64)
    for j in range(group_bytes):
        words |= padded[:, j].astype(np.uint64) << np.uint64(8 * j)
    mask = np.uint64(2 ** bits - 1)
    unsigned = np.stack([((words >> np.uint64(i * bits)) & mask).astype(np.uint8)
                         for i in range(per_group)], axis=1).reshape(-1)[:count]
    return (unsigned.astype(np.int16) - levels(bits)).astype(np.int8).reshape(shape)
