"""What a network costs to run: multiply-accumulates per image and timed calls.

The scaling study compares systems by these costs; the export measurement times its
runtimes with the same loop.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any


def model_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of a Keras model's convolution and dense layers.

    A convolution costs ``H_out * W_out * k_h * k_w * C_in / groups * C_out`` (depthwise:
    ``H_out * W_out * k_h * k_w * C_in * multiplier``), a dense layer ``inputs * units``
    per position. Batch norm (folded into the convolution at inference), additions,
    activations and pooling are not counted. Nested models are walked.
    """
    import tf_keras as keras

    conv = dense = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            nested = model_macs(layer)
            conv, dense = conv + nested["conv_macs"], dense + nested["dense_macs"]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, _ = layer.output_shape
            kh, kw = layer.kernel_size
            conv += h * w * kh * kw * layer.input_shape[-1] * layer.depth_multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            conv += h * w * kh * kw * (layer.input_shape[-1] // layer.groups) * c_out
        elif isinstance(layer, keras.layers.Dense):
            shape = layer.input_shape
            positions = math.prod(d for d in shape[1:-1]) if len(shape) > 2 else 1
            dense += positions * shape[-1] * layer.units
    return {"macs": int(conv + dense), "conv_macs": int(conv), "dense_macs": int(dense)}


def timed_calls(fn, repetitions: int, warmup: int) -> list[float]:
    """Seconds of ``repetitions`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def timed_side_by_side(fns, repetitions: int, warmup: int) -> list[list[float]]:
    """Seconds of ``repetitions`` rounds of calls of each of ``fns``, one after another
    within a round (after ``warmup`` untimed rounds): a ratio of their medians is then
    measured under the same machine state, so drift between rounds (another process,
    the clock speed) cancels out instead of landing on one side."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repetitions):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return times


def time_inference(predict, images, timing) -> dict[str, Any]:
    """Latency (median ms of a call on ``latency_batch`` images) and throughput (images/s
    at ``throughput_batch``) of ``predict(images)``, after ``warmup`` untimed calls.

    ``timing`` is the scaling study's ``TimingConfig`` (batch sizes, repetitions, warm-up).
    """
    import tensorflow as tf

    small = tf.constant(images[:timing.latency_batch])
    large = tf.constant(images[:timing.throughput_batch])
    t_small = timed_calls(lambda: predict(small), timing.latency_repetitions, timing.warmup)
    t_large = timed_calls(lambda: predict(large), timing.throughput_repetitions, timing.warmup)
    return {"latency_batch": int(small.shape[0]), "latency_ms": 1e3 * statistics.median(t_small),
            "latency_ms_min": 1e3 * min(t_small), "latency_repetitions": len(t_small),
            "throughput_batch": int(large.shape[0]),
            "throughput_ips": large.shape[0] / statistics.median(t_large),
            "throughput_repetitions": len(t_large)}
