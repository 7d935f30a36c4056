"""The three kinds of networks the paper compares, trained with one engine.

* **vanilla**: one network over all fine classes of the hierarchy (target ``fine``);
* **generalist**: the same backbone over the superclasses (target ``superclass``),
  optionally with an auxiliary fine-class head trained beside it
  (``train.generalist_fine_head``) and dropped afterwards;
* **specialists**: one network per superclass, trained from scratch on that
  superclass's images only, over its subclasses (target ``subclass``): the paper's
  "ensemble networks trained each only on subclasses of a given superclass".

Each network gets a folder (``<run>/vanilla``, ``<run>/generalist``,
``<run>/specialists/<superclass>``) with the engine's files plus ``network.json`` (how
to rebuild it), ``settings.json`` (what it was trained with, see :mod:`supersub_tf.run.freshness`),
``metrics.json`` (written last: its presence marks the network done, so a rerun with
the same settings skips it) and ``val_predictions.npz`` (probabilities and labels of the
validation split, in the split's order, for the analysis).

Whether a folder's network was trained with the config's settings is decided once, by
the run's orchestration (:func:`supersub_tf.run.freshness.ensure_fresh`, called by every
stage of :mod:`supersub_tf.run.pipeline` before any work): :func:`train_network` trains,
resumes or loads whatever is in the folder it is given, and records its settings there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from supersub_tf.accuracy import topk_accuracy
from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, TrainConfig
from supersub_tf.data import load_dataset
from supersub_tf.data.source import ImageSource
from supersub_tf.run.freshness import network_settings, record_settings
from supersub_tf.run.layout import METRICS, NETWORK, RunLayout
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.models import (
    AUX_LOGITS_LAYER, aux_head, check_pretrained, create_model, main_head, with_aux_head)
from supersub_tf.models.keras_applications import imagenet_head_classes
from supersub_tf.models.blocks import LOGITS_LAYER
from supersub_tf.training.distribution import training_scope
from supersub_tf.training.engine import (
    FINAL_WEIGHTS, fit, seed_everything, steps_for, with_head_targets, with_targets)
from supersub_tf.training.predictions import PREDICTIONS, save_predictions

TARGETS = {"vanilla": "fine", "generalist": "superclass", "specialist": "subclass"}


@dataclasses.dataclass
class TrainedNetwork:
    """A trained network, its folder and its validation metrics."""

    model: keras.Model
    out_dir: Path
    metrics: dict


def network_dir(run_dir: str | Path, kind: str, superclass: str | None = None) -> Path:
    """The folder of one network inside a run directory (:meth:`RunLayout.network`)."""
    return RunLayout(run_dir).network(kind, superclass)


def num_outputs(kind: str, hierarchy: Hierarchy, superclass: str | None = None) -> int:
    """Output classes of a network kind: fine classes, superclasses or subclasses."""
    if kind == "vanilla":
        return hierarchy.num_classes
    if kind == "generalist":
        return hierarchy.num_superclasses
    return hierarchy.num_subclasses(superclass)


def build_model(config: TrainConfig, num_classes: int, image_size: int,
                normalization: str | None = None,
                class_ids: list[str] | None = None) -> keras.Model:
    """The configured backbone with a ``num_classes`` head.

    With ``normalization`` (the data's; None when weights are loaded afterwards) it
    starts from ``train.pretrained``, checked against the backbone and that
    normalization, and with ``class_ids`` (the head's classes) and
    ``train.pretrained_head`` its head from the ImageNet head's rows of those classes.
    ``train.freeze_batchnorm`` freezes every batch norm.
    """
    options = {}
    if normalization is not None and config.pretrained != "none":
        check_pretrained(config.model, config.pretrained, normalization)
        options["weights"] = config.pretrained
        if config.pretrained_head and class_ids is not None:
            options["head_classes"] = imagenet_head_classes(class_ids)
    model = create_model(config.model, num_classes, (image_size, image_size, 3),
                         width=config.width, **options)
    if config.freeze_batchnorm:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return model


class _OwnTracesFilter(logging.Filter):
    """Drops TensorFlow's "excessive retracing" warning about :func:`predict`'s functions:
    each network is traced exactly once, and a run that evaluates many specialists in
    turn traces many networks, which is what the warning's heuristic counts."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "predict.<locals>" in message)


tf.get_logger().addFilter(_OwnTracesFilter())


def predict(model: keras.Model, dataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Softmax probabilities and labels of every batch of an (ordered) dataset.

    One graph per model whatever the batch sizes (the last batch is usually short):
    ``predict_on_batch`` traced again per shape.
    """
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False),
                                                          tf.float32)), input_signature=[spec])
    probs, labels = [], {}
    for images, batch_labels in dataset:
        probs.append(forward(images).numpy())
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(value.numpy())
    return np.concatenate(probs), {k: np.concatenate(v) for k, v in labels.items()}


def load_network(out_dir: Path) -> TrainedNetwork:
    """Rebuilds a finished network from its folder (``network.json`` + final weights).

    A generalist trained with an auxiliary fine head comes back without it: the one-head
    model every later stage uses.
    """
    spec = json.loads((out_dir / NETWORK).read_text())
    train = TrainConfig(**{k: v for k, v in spec["train"].items()})
    model = build_model(train, spec["num_classes"], spec["image_size"])
    if spec.get("aux_fine_classes"):
        full = with_aux_head(model, spec["aux_fine_classes"])
        full.load_weights(str(out_dir / FINAL_WEIGHTS))
        model = main_head(full)
    else:
        model.load_weights(str(out_dir / FINAL_WEIGHTS))
    return TrainedNetwork(model, out_dir, json.loads((out_dir / METRICS).read_text()))


def train_network(config: RunConfig, source: ImageSource, kind: str, run_dir: str | Path,
                  superclass: str | None = None, log=print) -> TrainedNetwork:
    """Trains one network (or loads it if its folder says it is done) and evaluates it.

    The folder is taken as it is: the caller has checked that what it holds was trained
    with ``config``'s settings (the run's stages call
    :func:`~supersub_tf.run.freshness.ensure_fresh` first).

    Args:
        config: The run's config (data, train settings, seed).
        source: The dataset source (shared between networks to list files once).
        kind: ``vanilla``, ``generalist`` or ``specialist``.
        run_dir: The run directory.
        superclass: For a specialist, the superclass it covers.
        log: Where progress lines go.
    """
    out = network_dir(run_dir, kind, superclass)
    label = f"{kind} {superclass}" if superclass else kind
    if (out / METRICS).exists():
        log(f"[{label}] already trained, loading {out}")
        return load_network(out)
    record_settings(out, network_settings(config, kind))
    hierarchy, train_cfg = source.hierarchy, config.train
    if kind == "specialist" and train_cfg.specialist_epochs:
        train_cfg = dataclasses.replace(train_cfg, epochs=train_cfg.specialist_epochs)
    key, n = TARGETS[kind], num_outputs(kind, hierarchy, superclass)
    seed = config.seed + (1 + hierarchy.superclass_index(superclass) if superclass else 0)
    keras.backend.clear_session()  # a fresh graph per network: no retracing across models
    seed_everything(seed, config.train.deterministic)
    keras.mixed_precision.set_global_policy("mixed_float16" if train_cfg.mixed_precision
                                            else "float32")
    train = load_dataset(config.data, "train", batch_size=train_cfg.batch_size,
                         superclass=superclass, seed=seed, source=source)
    val = load_dataset(config.data, "val", batch_size=train_cfg.eval_batch_size,
                       training=False, superclass=superclass, source=source)
    fine_head = train_cfg.generalist_fine_head if kind == "generalist" else 0.0
    steps_per_epoch = steps_for(train.num_examples, train_cfg.batch_size)
    with training_scope(train_cfg.distribution) as strategy:  # variables on every replica
        classes = (hierarchy.class_ids if kind == "vanilla" else
                   [hierarchy.class_ids[i] for i in hierarchy.fine_labels_of(superclass)]
                   if kind == "specialist" else None)  # the generalist's are superclasses
        model = build_model(train_cfg, n, config.data.image_size, config.data.normalization,
                            classes)
        log(f"[{label}] {train_cfg.model} x{train_cfg.width}, {model.count_params():,} "
            f"parameters, {n} classes, {train.num_examples:,} training images, "
            f"{train_cfg.epochs} epochs"
            + (f", auxiliary fine head (loss weight {fine_head})" if fine_head else "")
            + (f", {strategy.num_replicas_in_sync} replicas"
               if strategy.num_replicas_in_sync > 1 else ""))
        start = time.time()
        if fine_head:  # both heads on the shared trunk; later stages use the superclass head
            full = with_aux_head(model, hierarchy.num_classes)
            heads = {LOGITS_LAYER: (key, n), AUX_LOGITS_LAYER: ("fine", hierarchy.num_classes)}
            history = fit(full, with_head_targets(train.dataset, heads),
                          with_head_targets(val.dataset, heads), train_cfg, out,
                          steps_per_epoch,
                          loss_weights={LOGITS_LAYER: 1.0, AUX_LOGITS_LAYER: fine_head})
            model = main_head(full)
        else:
            history = fit(model, with_targets(train.dataset, key, n),
                          with_targets(val.dataset, key, n), train_cfg, out, steps_per_epoch)
    seconds = time.time() - start
    probs, labels = predict(model, val.dataset)
    save_predictions(out / PREDICTIONS, probs, labels)
    target = labels[key]
    metrics = {
        "kind": kind, "superclass": superclass, "num_classes": n,
        "parameters": int(model.count_params()),
        "train_images": train.num_examples, "val_images": val.num_examples,
        "epochs": len(history.get("epoch", [])),
        "steps": len(history.get("epoch", [])) * steps_per_epoch,
        "train_seconds": round(seconds, 1),
        "top1": topk_accuracy(probs, target, 1),
        "top5": topk_accuracy(probs, target, 5),
        "final_train_accuracy": (float(history["accuracy"][-1]) if "accuracy" in history
                                 else None),
        "final_train_loss": float(history["loss"][-1]) if "loss" in history else None,
    }
    if fine_head:  # the auxiliary head is a vanilla-size fine classifier of its own
        fine_probs, _ = predict(aux_head(full), val.dataset)
        metrics["aux_fine_top1"] = topk_accuracy(fine_probs, labels["fine"], 1)
    atomic_write_text(out / NETWORK, json.dumps({
        "kind": kind, "superclass": superclass, "num_classes": n,
        **({"aux_fine_classes": hierarchy.num_classes} if fine_head else {}),
        "image_size": config.data.image_size, "train": dataclasses.asdict(train_cfg)},
        indent=2) + "\n")
    atomic_write_text(out / METRICS, json.dumps(metrics, indent=2) + "\n")
    log(f"[{label}] val top-1 {metrics['top1']:.3f} ({seconds:.0f} s)")
    return TrainedNetwork(model, out, metrics)


def train_specialists(config: RunConfig, source: ImageSource, run_dir: str | Path,
                      log=print) -> dict[str, TrainedNetwork]:
    """Trains one specialist per superclass (each from scratch, on its own images)."""
    return {name: train_network(config, source, "specialist", run_dir, name, log)
            for name in source.hierarchy.superclass_names}
