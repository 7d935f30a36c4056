"""The one-file-per-specialist format: round trip, overhead, and every way it can be bad."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from supersub_tf.deltas.specialist_file import (
    MAGIC, decode_specialist, encode_specialist, layout_digest, read_specialist_file,
    write_specialist_file)
from supersub_tf.errors import StorageError

SPECS = [("delta/conv/codes", "uint8", (10,)), ("delta/conv/scales", "float32", (4,)),
         ("owned/logits/0", "float32", (3, 2)), ("owned/logits/1", "float32", (2,))]
META = {"superclass": "dog", "superclass_index": 0, "subclasses": ["n1", "n2"], "bits": 4}


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"delta/conv/codes": rng.integers(0, 255, 10).astype(np.uint8),
            "delta/conv/scales": rng.random(4).astype(np.float32),
            "owned/logits/0": rng.normal(size=(3, 2)).astype(np.float32),
            "owned/logits/1": rng.normal(size=2).astype(np.float32)}


def test_round_trip_and_overhead(tmp_path):
    path = tmp_path / "dog.delta"
    write_specialist_file(path, META, arrays(), SPECS)
    meta, loaded = read_specialist_file(path, SPECS)
    assert {k: meta[k] for k in META} == META
    for name, array in arrays().items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype
    payload = sum(a.nbytes for a in arrays().values())
    assert meta["payload_bytes"] == payload
    assert path.stat().st_size - payload < 250  # prefix, a small JSON header, the sha256


def test_any_flipped_byte_fails_the_checksum():
    data = encode_specialist(META, arrays(), SPECS)
    for position in (len(MAGIC) + 9, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = bytearray(data)
        bad[position] ^= 0x01
        with pytest.raises(StorageError, match="x.delta: checksum mismatch"):
            decode_specialist(bytes(bad), SPECS, "x.delta")


def test_truncated_foreign_and_future_files():
    data = encode_specialist(META, arrays(), SPECS)
    with pytest.raises(StorageError, match="checksum mismatch"):
        decode_specialist(data[:-7], SPECS, "x.delta")
    with pytest.raises(StorageError, match="not a supersub specialist file"):
        decode_specialist(b"PK\x03\x04" + data[4:], SPECS, "x.delta")
    with pytest.raises(StorageError, match="not a supersub specialist file"):
        decode_specialist(data[:20], SPECS, "x.delta")
    future = bytearray(data)
    struct.pack_into("<H", future, len(MAGIC), 9)
    with pytest.raises(StorageError, match="specialist file version 9; this code reads"):
        decode_specialist(bytes(future), SPECS, "x.delta")


def test_another_layout_is_named():
    data = encode_specialist(META, arrays(), SPECS)
    other = SPECS[:1] + [("delta/conv/scales", "float32", (2, 2))] + SPECS[2:]
    assert layout_digest(other) != layout_digest(SPECS)
    with pytest.raises(StorageError, match=r"written for another array layout \(digest "
                                           f"{layout_digest(SPECS)}"):
        decode_specialist(data, other, "x.delta")


def test_encode_rejects_arrays_that_are_not_the_layout():
    wrong_dtype = {**arrays(), "owned/logits/1": np.zeros(2, np.float64)}
    with pytest.raises(StorageError, match="owned/logits/1 is float64"):
        encode_specialist(META, wrong_dtype, SPECS)
    missing = {k: v for k, v in arrays().items() if k != "delta/conv/scales"}
    with pytest.raises(StorageError, match="are not the layout's"):
        encode_specialist(META, missing, SPECS)


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(StorageError, match="nothing.delta: unreadable specialist file"):
        read_specialist_file(tmp_path / "nothing.delta", SPECS)


def test_compressible_payload_is_stored_compressed():
    """Trained 2-bit codes are mostly zero: the payload is LZMA-compressed, and reads back
    the same bytes; without compression the file holds them raw."""
    zeros = {**arrays(), "delta/conv/codes": np.zeros(10, np.uint8)}
    big = [("delta/conv/codes", "uint8", (4000,)), *SPECS[1:]]
    data = {**zeros, "delta/conv/codes": np.tile(np.array([0, 0, 0, 5], np.uint8), 1000)}
    packed, raw = (encode_specialist(META, data, big, compress=c) for c in (True, False))
    assert len(packed) < len(raw) / 4
    for blob, kind in ((packed, "lzma"), (raw, "none")):
        meta, loaded = decode_specialist(blob, big, "x.delta")
        assert meta["compression"] == kind and meta["payload_bytes"] == 4000 + 16 + 24 + 8
        for name, array in data.items():
            np.testing.assert_array_equal(loaded[name], array)
    assert decode_specialist(encode_specialist(META, arrays(), SPECS), SPECS,
                             "x.delta")[0]["compression"] == "none"  # random: not smaller
