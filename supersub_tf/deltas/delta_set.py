"""The deltas of one specialist, as plain data: what is stored and swapped in.

A specialist built from the generalist differs from it in three ways:

* **deltas**: for each kernel that has one, ``W_specialist = W_generalist + delta``;
  the delta is stored as k-bit signed integers with one float32 scale per output
  channel (symmetric, narrow range: codes in ``[-(2^(k-1) - 1), 2^(k-1) - 1]``), or as
  float32 when ``bits`` is None;
* **owned weights**: layers whose weights the specialist replaces outright (its head,
  and its batch-norm parameters and statistics), as float32 arrays;
* nothing else: every other weight is the generalist's, bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from supersub_tf.choices import check_bits
from supersub_tf.models.blocks import LOGITS_LAYER


def levels(bits: int) -> int:
    """Largest code magnitude of symmetric narrow-range ``bits``-bit quantization:
    codes lie in ``[-levels, levels]``, ``2^(k-1) - 1`` (the one definition)."""
    return 2 ** (bits - 1) - 1


def quantization_scale(values: np.ndarray, bits: int) -> np.ndarray:
    """Per-output-channel (last axis) symmetric scale: ``max|x| / (2^(k-1) - 1)``.

    This is the scale of tfmot's ``LastValueQuantizer(symmetric=True,
    narrow_range=True, per_axis=True)`` for a fresh range. A trained QAT model applies
    the range it stored at its last training step, so its deltas are read out with
    :func:`supersub_tf.deltas.quantization.quantized_delta` instead. Channels that are
    all zero get scale 1 (their codes are all zero anyway).
    """
    reduce_axes = tuple(range(values.ndim - 1))
    peak = np.max(np.abs(values), axis=reduce_axes) if values.ndim > 1 else np.abs(values)
    return np.where(peak > 0, peak / levels(bits), 1.0).astype(np.float32)


@dataclasses.dataclass
class QuantizedTensor:
    """A tensor as k-bit integer codes and per-output-channel scales (or float32)."""

    codes: np.ndarray
    scales: np.ndarray | None
    bits: int | None

    @classmethod
    def quantize(cls, values: np.ndarray, bits: int | None) -> QuantizedTensor:
        """Quantizes ``values`` symmetrically per output channel; ``bits=None`` keeps float32."""
        values = np.asarray(values, np.float32)
        if bits is None:
            return cls(values.copy(), None, None)
        check_bits(bits)
        scales = quantization_scale(values, bits)
        top = levels(bits)
        codes = np.clip(np.round(values / scales), -top, top).astype(np.int8)
        return cls(codes, scales, bits)

    def dequantize(self) -> np.ndarray:
        """The float32 tensor the codes stand for."""
        if self.bits is None:
            return self.codes.astype(np.float32)
        return self.codes.astype(np.float32) * self.scales

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)


@dataclasses.dataclass
class DeltaSet:
    """Everything that turns the generalist into one specialist.

    Attributes:
        superclass: The superclass whose specialist this is.
        bits: Bit width of the deltas (None: float32 deltas).
        deltas: Layer name -> the delta of that layer's kernel.
        owned: Layer name -> the full weights the specialist uses instead of the
            generalist's (its head and, if trained, its batch-norm layers), in the
            layer's ``get_weights()`` order.
        catch_all: The head has one output more than the superclass has subclasses,
            the last: "not my superclass" (``deltas.catch_all``).
    """

    superclass: str
    bits: int | None
    deltas: dict[str, QuantizedTensor]
    owned: dict[str, list[np.ndarray]]
    catch_all: bool = False

    def without_other(self) -> DeltaSet:
        """The same specialist without its catch-all output (itself when it has none).

        ``p(subclass | superclass, not other)`` is the softmax of the remaining logits,
        so hard routing, which never compares specialists, answers exactly the same.
        """
        if not self.catch_all:
            return self
        kernel, bias = self.owned[LOGITS_LAYER]
        owned = {**self.owned, LOGITS_LAYER: [kernel[..., :-1], bias[:-1]]}
        return dataclasses.replace(self, owned=owned, catch_all=False)

    def num_delta_values(self) -> int:
        """Number of delta entries (one per kernel weight that has a delta)."""
        return int(sum(np.prod(d.shape) for d in self.deltas.values()))


def touched_layers(delta_sets) -> set[str]:
    """The trunk layers any of ``delta_sets`` changes (a delta or owned weights; the head
    is replaced, not changed): what swapping a specialist in writes, and what restoring
    the generalist must write back."""
    return {name for d in delta_sets for name in [*d.deltas, *d.owned] if name != LOGITS_LAYER}


def save_delta_set(path, delta_set: DeltaSet) -> None:
    """Writes one specialist's deltas, unpacked, as an ``.npz`` (atomically).

    This is the training checkpoint of a finished specialist (its presence marks it
    done); the compact, verified format of a whole system is
    :mod:`supersub_tf.deltas.storage`.
    """
    import io
    import json

    from supersub_tf.atomic import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    for name, delta in delta_set.deltas.items():
        arrays[f"delta/{name}/codes"] = delta.codes
        if delta.scales is not None:
            arrays[f"delta/{name}/scales"] = delta.scales
    owned_counts = {}
    for name, weights in delta_set.owned.items():
        owned_counts[name] = len(weights)
        for i, value in enumerate(weights):
            arrays[f"owned/{name}/{i}"] = np.asarray(value, np.float32)
    meta = {"superclass": delta_set.superclass, "bits": delta_set.bits,
            "deltas": list(delta_set.deltas), "owned": owned_counts,
            "catch_all": delta_set.catch_all}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_delta_set(path) -> DeltaSet:
    """Reads :func:`save_delta_set` output."""
    import json

    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        bits = meta["bits"]
        deltas = {name: QuantizedTensor(data[f"delta/{name}/codes"],
                                        data[f"delta/{name}/scales"] if bits else None, bits)
                  for name in meta["deltas"]}
        owned = {name: [data[f"owned/{name}/{i}"] for i in range(count)]
                 for name, count in meta["owned"].items()}
    return DeltaSet(meta["superclass"], bits, deltas, owned, meta.get("catch_all", False))
