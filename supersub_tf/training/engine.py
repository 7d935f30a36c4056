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

from supersub_tf.atomic import atomic_path
from supersub_tf.config import TrainConfig
from supersub_tf.errors import ConfigError
from supersub_tf.models.blocks import LOGITS_LAYER
from supersub_tf.models.heads import AUX_LOGITS_LAYER
from supersub_tf.training.history import HISTORY, read_history
from supersub_tf.training.schedules import make_optimizer

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


def with_distilled_targets(dataset, teacher: keras.Model, classes, weight: float,
                           temperature: float):
    """Maps ``(image, labels)`` to ``(image, soft target)`` for a specialist distilled
    from ``teacher`` (Hinton et al. 2015): ``(1 - weight) * one_hot(subclass) + weight *
    softmax(teacher logits of ``classes`` / temperature)``.

    The teacher (the vanilla network, frozen) runs on each augmented batch as the data
    is read; ``classes`` are its outputs of the specialist's superclass, in subclass
    order, so the soft target is the teacher's renormalised opinion within it.
    """
    classes = tf.constant(classes, tf.int32)
    n = int(classes.shape[0])

    def target(image, labels):
        logits = tf.gather(tf.cast(teacher(image, training=False), tf.float32), classes, axis=1)
        soft = tf.nn.softmax(logits / temperature)
        return image, (1.0 - weight) * tf.one_hot(labels["subclass"], n) + weight * soft

    return dataset.map(target, num_parallel_calls=tf.data.AUTOTUNE)


def with_catch_all_targets(dataset, superclass_index: int, num_subclasses: int):
    """Maps ``(image, labels)`` to a catch-all specialist's one-hot target: the subclass
    for images of superclass ``superclass_index``, the extra last output for the others."""
    def target(image, labels):
        own = tf.equal(labels["superclass"], superclass_index)
        index = tf.where(own, labels["subclass"], num_subclasses)
        return image, tf.one_hot(index, num_subclasses + 1)

    return dataset.map(target, num_parallel_calls=tf.data.AUTOTUNE)


def with_head_targets(dataset, heads: dict[str, tuple[str, int]]):
    """Maps ``(image, labels)`` to ``(image, {output: one_hot(labels[key])})`` for a model
    with several heads; ``heads`` maps each output name to ``(label key, classes)``."""
    def targets(image, labels):
        return image, {name: tf.one_hot(labels[key], n) for name, (key, n) in heads.items()}

    return dataset.map(targets, num_parallel_calls=tf.data.AUTOTUNE)


def _metrics(num_classes: int) -> list:
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    return metrics


def head_variables(model: keras.Model) -> list:
    """The trainable variables of ``model``'s heads: its ``logits`` layer and, for a
    generalist with an auxiliary fine head, that head's (both new or task-specific
    layers, which ``train.trunk_learning_rate`` leaves at the full rate)."""
    names = (LOGITS_LAYER, AUX_LOGITS_LAYER)
    return [w for layer in model.layers if layer.name in names for w in layer.trainable_weights]


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int,
                  loss_weights: dict[str, float] | None = None) -> None:
    """Compiles with the configured optimizer, schedule, loss and top-1/top-5 metrics.

    A model with several outputs gets one loss and one set of metrics per output,
    weighted by ``loss_weights`` (output name -> weight); Keras then prefixes each
    metric with its output's name (``logits_accuracy``). With
    ``config.trunk_learning_rate`` below 1 every variable but the heads'
    (:func:`head_variables`) learns at that multiple of the rate.

    Raises:
        ConfigError: ``train.trunk_learning_rate`` is set and the model has no trainable
            ``logits`` layer to keep at the full rate.
    """
    def loss():
        return keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=config.label_smoothing)

    heads = head_variables(model)
    if config.trunk_learning_rate != 1.0 and not heads:
        raise ConfigError(f"train.trunk_learning_rate={config.trunk_learning_rate}: model "
                          f"{model.name!r} has no trainable {LOGITS_LAYER!r} head layer to "
                          "train at the full rate")
    optimizer = make_optimizer(config, steps_per_epoch, heads)
    if len(model.outputs) == 1:
        model.compile(optimizer=optimizer, loss=loss(), metrics=_metrics(model.output_shape[-1]))
        return
    shapes = dict(zip(model.output_names, model.output_shape))
    model.compile(optimizer=optimizer, loss={name: loss() for name in shapes},
                  loss_weights=loss_weights,
                  metrics={name: _metrics(shape[-1]) for name, shape in shapes.items()})


def fit(model: keras.Model, train, val, config: TrainConfig, out_dir: str | os.PathLike,
        steps_per_epoch: int, loss_weights: dict[str, float] | None = None) -> dict:
    """Trains ``model`` into ``out_dir``, resuming from a backup if one is there.

    Args:
        model: A freshly built (uncompiled) model; compiled here.
        train: Training ``tf.data.Dataset`` of ``(image, one-hot target)`` batches.
        val: Validation dataset of the same structure, or None.
        config: Optimizer, schedule, epochs and verbosity.
        out_dir: The network's folder (see the module docstring).
        steps_per_epoch: Batches per epoch of ``train`` (sets the schedule's length).
        loss_weights: For a model with several outputs (targets a dict by output name):
            each output's loss weight. The best checkpoint follows the first output.

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
    compile_model(model, config, steps_per_epoch, loss_weights)
    monitor = "val_accuracy" if len(model.outputs) == 1 else f"val_{model.output_names[0]}_accuracy"
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(backup), save_freq=config.backup_every_steps or "epoch", delete_checkpoint=False),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0),
    ]
    if val is not None:
        callbacks.append(AtomicModelCheckpoint(out / BEST_WEIGHTS, monitor=monitor,
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
