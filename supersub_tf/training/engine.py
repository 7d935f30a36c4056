"""The training engine: compile, fit with the standard Keras callbacks, resume, save.

One call, :func:`fit`, trains a model into an output folder::

    <out_dir>/history.csv          CSVLogger, one row per epoch (appended on resume)
    <out_dir>/logs/                TensorBoard
    <out_dir>/best.weights.h5      best validation accuracy so far (atomic)
    <out_dir>/final.weights.h5     weights after the last epoch (atomic)
    <out_dir>/backup/              BackupAndRestore state while training runs

A run killed at any point and restarted with the same command continues from the last
backup (the end of the last finished epoch, or every ``backup_every_steps`` steps) and
finishes with the same files; the final weights are what later stages use, the best
checkpoint is kept for inspection (it is selected on the validation split).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from supersub_tf.analysis.plots import read_history
from supersub_tf.atomic import atomic_path
from supersub_tf.config import TrainConfig
from supersub_tf.training.schedules import make_optimizer

HISTORY = "history.csv"
BEST_WEIGHTS = "best.weights.h5"
FINAL_WEIGHTS = "final.weights.h5"
BACKUP_DIR = "backup"


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' ModelCheckpoint, writing to a temporary file that is renamed into place,
    so a kill during the write never leaves a truncated checkpoint."""

    def __init__(self, filepath: str | os.PathLike, **kwargs) -> None:
        self.final_path = Path(filepath)
        self.partial_path = self.final_path.with_name(f".partial.{self.final_path.name}")
        super().__init__(str(self.partial_path), **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.partial_path.exists():
            os.replace(self.partial_path, self.final_path)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and TensorFlow; with ``deterministic`` also makes every op
    (and tf.data's parallel maps) deterministic, process-wide, so the same seed and
    data give bit-identical networks."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def save_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save_weights`` to an ``.h5`` path, atomically."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))


def keras_verbosity(setting: str) -> int:
    """Keras ``verbose`` for a config value: ``auto`` gives a progress bar in a terminal
    or an interactive notebook and one line per epoch elsewhere (CI, papermill, logs)."""
    if setting != "auto":
        return int(setting)
    interactive_kernel = "ipykernel" in sys.modules and not os.environ.get("CI")
    return 1 if sys.stdout.isatty() or interactive_kernel else 2


def with_targets(dataset, key: str, num_classes: int):
    """Maps ``(image, labels)`` to ``(image, one_hot(labels[key]))`` for Keras."""
    return dataset.map(lambda image, labels: (image, tf.one_hot(labels[key], num_classes)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Compiles with the configured optimizer, schedule, loss and top-1/top-5 metrics."""
    num_classes = model.output_shape[-1]
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    model.compile(optimizer=make_optimizer(config, steps_per_epoch),
                  loss=keras.losses.CategoricalCrossentropy(
                      from_logits=True, label_smoothing=config.label_smoothing),
                  metrics=metrics)


def fit(model: keras.Model, train, val, config: TrainConfig, out_dir: str | os.PathLike,
        steps_per_epoch: int) -> dict:
    """Trains ``model`` into ``out_dir``, resuming from a backup if one is there.

    Args:
        model: A freshly built (uncompiled) model; compiled here.
        train: Training ``tf.data.Dataset`` of ``(image, one-hot target)`` batches.
        val: Validation dataset of the same structure, or None.
        config: Optimizer, schedule, epochs and verbosity.
        out_dir: The network's folder (see the module docstring).
        steps_per_epoch: Batches per epoch of ``train`` (sets the schedule's length).

    Returns:
        The epoch history read back from ``history.csv`` (``{column: array}``, all
        epochs, also those run before a restart).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backup = out / BACKUP_DIR
    resuming = backup.exists()
    if not resuming and (out / HISTORY).exists():
        (out / HISTORY).unlink()  # a stale history of an unfinished, unbacked-up run
    compile_model(model, config, steps_per_epoch)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(backup), save_freq=config.backup_every_steps or "epoch", delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0),
    ]
    if val is not None:
        callbacks.append(AtomicModelCheckpoint(out / BEST_WEIGHTS, monitor="val_accuracy",
                                               mode="max", save_best_only=True,
                                               save_weights_only=True))
    model.fit(train, validation_data=val, epochs=config.epochs, callbacks=callbacks,
              verbose=keras_verbosity(config.verbose))
    save_weights(model, out / FINAL_WEIGHTS)
    shutil.rmtree(backup, ignore_errors=True)
    return read_history(out / HISTORY)


def steps_for(num_examples: int, batch_size: int) -> int:
    """Batches per epoch of a dataset of ``num_examples`` (the last batch may be short)."""
    return max(1, math.ceil(num_examples / batch_size))
