"""Which ``tf.distribute`` strategy trains the networks: ``train.distribution``.

================  ==============================================================
setting           strategy
================  ==============================================================
``auto``          ``MirroredStrategy`` over the GPUs when more than one is visible,
                  otherwise the default strategy (one device)
``none``          the default strategy: one device, as without tf.distribute
``mirrored``      ``MirroredStrategy``: every visible GPU, or without GPUs every
                  logical CPU device (``tf.config.set_logical_device_configuration``)
``multi_worker``  ``MultiWorkerMirroredStrategy``, workers from ``TF_CONFIG``
``tpu``           ``TPUStrategy`` on the TPU the cluster resolver finds (untested here)
================  ==============================================================

Every network is built, compiled and trained inside the strategy's scope
(:func:`training_scope`); ``train.batch_size`` is the *global* batch, which Keras
splits across the replicas, so a run means the same optimisation on any number of
devices (batch norm statistics are per replica, as Keras' layers compute them).
Checkpoints, BackupAndRestore resumption and the stored system are unchanged: the
weights a strategy trains are ordinary variables once read back.

The strategy is made once per process and setting and then reused, because
``MultiWorkerMirroredStrategy`` can be created only once per program (it configures
the collective ops of the whole process).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator

import tensorflow as tf

from supersub_tf.config import DISTRIBUTIONS
from supersub_tf.errors import ConfigError


@functools.lru_cache(maxsize=None)
def strategy_for(setting: str) -> tf.distribute.Strategy:
    """The strategy of a ``train.distribution`` setting (made once per process).

    ``multi_worker`` must be made before TensorFlow runs any op, so the run's entry
    points (:func:`supersub_tf.run.run_pipeline`, :func:`~supersub_tf.run.train_stage`)
    call this before they load data.

    Raises:
        ConfigError: For an unknown setting, ``multi_worker`` without a usable
            ``TF_CONFIG``, or ``tpu`` without a TPU.
    """
    if setting not in DISTRIBUTIONS:
        raise ConfigError(f"train.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                          f"got {setting!r}")
    if setting == "multi_worker":  # first: it must configure TensorFlow before any op runs
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", "")).get("cluster", {})
        except ValueError:
            cluster = {}
        if not cluster.get("worker"):
            raise ConfigError("train.distribution=multi_worker needs TF_CONFIG naming the "
                              "workers, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
                              "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
                              "\"index\": 0}}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if setting == "tpu":
        return _tpu_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if setting == "none" or (setting == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")  # auto with 2+ GPUs, mirrored
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _tpu_strategy() -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as err:
        raise ConfigError(f"train.distribution=tpu: no TPU found ({err})") from None
    return tf.distribute.TPUStrategy(resolver)


@contextlib.contextmanager
def training_scope(setting: str) -> Iterator[tf.distribute.Strategy]:
    """The scope in which a network is built, compiled and trained."""
    strategy = strategy_for(setting)
    with strategy.scope():
        yield strategy
