"""Delta specialists: fine-tuning a base network into one specialist per superclass.

The base (``deltas.base``) is the vanilla network (the default) or the paper's
generalist. Each specialist starts from it: the same trunk weights, frozen, plus
zero-initialised deltas (quantization-aware trained to ``bits``, or float), a head over
its superclass's subclasses (on the vanilla base, the vanilla head's rows of those
classes, so training starts from what the vanilla network already knows; on a
generalist, a new one) and, if configured, its own batch-norm weights; with
``deltas.distill`` its targets mix the labels with the vanilla network's soft ones;
it is trained on its superclass's images only, or, as a catch-all specialist
(``deltas.catch_all``), also on a sample of the others' images, which its extra last
output learns to call "not my superclass". Its folder
(``<run>/deltas/<bits>/<superclass>/``) holds the engine's files, its validation
predictions (true superclass given) and ``delta_set.npz``, written last: its presence
marks the specialist done, so a rerun skips it. Whether the folder was trained with the
config's settings is decided before, once, by the run's orchestration
(:func:`supersub_tf.run.freshness.ensure_fresh`); here the settings are only recorded.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import tf_keras as keras

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, bits_tag
from supersub_tf.data import load_catch_all_dataset, load_dataset
from supersub_tf.data.source import ImageSource
from supersub_tf.deltas.delta_set import DeltaSet, load_delta_set, save_delta_set
from supersub_tf.deltas.specialist import build_delta_specialist, extract_delta_set, head_rows
from supersub_tf.run.freshness import delta_settings, record_settings
from supersub_tf.run.layout import METRICS, RunLayout
from supersub_tf.training.distribution import training_scope
from supersub_tf.training.engine import (
    fit, seed_everything, steps_for, with_catch_all_targets, with_distilled_targets,
    with_targets)
from supersub_tf.training.networks import predict
from supersub_tf.training.predictions import PREDICTIONS, save_predictions

DELTA_SET = "delta_set.npz"


def train_delta_specialist(config: RunConfig, source: ImageSource, run_dir: str | Path,
                           base: keras.Model, superclass: str, bits: int | None,
                           log=print) -> DeltaSet:
    """Fine-tunes one delta specialist of ``base`` (the vanilla network or the
    generalist, as ``config.deltas.base`` says) or loads its finished deltas, and
    returns them. The folder is taken as it is (the run's stages check freshness first).
    """
    out = RunLayout(run_dir).delta_specialist(bits, superclass)
    label = f"delta {bits_tag(bits)} {superclass}"
    if (out / DELTA_SET).exists():
        log(f"[{label}] already trained, loading {out / DELTA_SET}")
        return load_delta_set(out / DELTA_SET)
    record_settings(out, delta_settings(config, bits))
    settings, h = config.deltas, source.hierarchy
    train_cfg = dataclasses.replace(
        config.train, epochs=settings.epochs or config.train.specialist_epochs or
        config.train.epochs, learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay, trunk_learning_rate=1.0)  # deltas: one rate
    seed = config.seed + 1 + h.superclass_index(superclass)
    keras.backend.clear_session()  # a fresh graph per specialist: no retracing across models
    seed_everything(seed, config.train.deterministic)
    n, index = h.num_subclasses(superclass), h.superclass_index(superclass)
    catch_all = settings.catch_all > 0
    val = load_dataset(config.data, "val", batch_size=train_cfg.eval_batch_size,
                       training=False, superclass=superclass, source=source)
    if catch_all:  # its own images plus a sample of the others', which it learns to reject
        train = load_catch_all_dataset(config.data, "train", superclass, settings.catch_all,
                                       batch_size=train_cfg.batch_size, seed=seed,
                                       source=source)
        val_mixed = load_catch_all_dataset(config.data, "val", superclass, settings.catch_all,
                                           batch_size=train_cfg.eval_batch_size, seed=seed,
                                           source=source)
        train_targets = with_catch_all_targets(train.dataset, index, n)
        val_targets = with_catch_all_targets(val_mixed.dataset, index, n)
    else:
        train = load_dataset(config.data, "train", batch_size=train_cfg.batch_size,
                             superclass=superclass, seed=seed, source=source)
        train_targets = (with_distilled_targets(train.dataset, base, h.fine_labels_of(index),
                                                settings.distill, settings.distill_temperature)
                         if settings.distill else with_targets(train.dataset, "subclass", n))
        val_targets = with_targets(val.dataset, "subclass", n)
    start = time.time()
    steps = steps_for(train.num_examples, train_cfg.batch_size)
    if bits is not None and steps * train_cfg.epochs < 2:
        log(f"[{label}] warning: one optimizer step only; the QAT quantizer's range is set "
            "from the delta before the step (zero), so every code would be zero")
    # On the vanilla base the head starts from the vanilla head's rows of the superclass.
    head_init = head_rows(base, h.fine_labels_of(index)) if settings.base == "vanilla" else None
    with training_scope(train_cfg.distribution):
        model = build_delta_specialist(base, n + int(catch_all),
                                       from_stage=settings.from_stage,
                                       train_batchnorm=settings.train_batchnorm, bits=bits,
                                       head_init=head_init)
        trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
        log(f"[{label}] {trainable:,} trainable values, {train.num_examples:,} images"
            f"{' (others included)' if catch_all else ''}, {train_cfg.epochs} epochs")
        fit(model, train_targets, val_targets, train_cfg, out, steps)
    probs, labels = predict(model, val.dataset)
    metrics = {"superclass": superclass, "bits": bits, "num_classes": n, "base": settings.base,
               "train_images": train.num_examples, "epochs": train_cfg.epochs,
               "steps": train_cfg.epochs * steps}
    if catch_all:
        metrics.update(catch_all_metrics(model, probs, val_mixed.dataset, index))
        probs = probs[:, :n] / np.maximum(1.0 - probs[:, n:], 1e-12)  # p(sub | s, not other)
    save_predictions(out / PREDICTIONS, probs, labels)
    delta_set = extract_delta_set(model, superclass, bits, catch_all=catch_all)
    metrics.update({"train_seconds": round(time.time() - start, 1),
                    "oracle_top1": float((probs.argmax(1) == labels["subclass"]).mean()),
                    "delta_values": delta_set.num_delta_values()})
    atomic_write_text(out / METRICS, json.dumps(metrics, indent=2) + "\n")
    save_delta_set(out / DELTA_SET, delta_set)
    log(f"[{label}] val top-1 (true superclass given) {metrics['oracle_top1']:.3f}")
    return delta_set


def catch_all_metrics(model: keras.Model, own_probs: np.ndarray, mixed_val,
                      superclass_index: int) -> dict[str, float]:
    """How well a catch-all specialist tells its superclass from the others on validation
    images: the share of its own images it keeps (``p(other) < 0.5``) and of the
    others' sample it rejects."""
    mixed_probs, mixed_labels = predict(model, mixed_val)
    others = mixed_labels["superclass"] != superclass_index
    return {"catch_all_own_kept": float((own_probs[:, -1] < 0.5).mean()),
            "catch_all_others_rejected": float((mixed_probs[others, -1] >= 0.5).mean())
            if others.any() else None}


def train_delta_specialists(config: RunConfig, source: ImageSource, run_dir: str | Path,
                            base: keras.Model, bits: int | None,
                            log=print) -> dict[str, DeltaSet]:
    """All superclasses' delta specialists of ``base`` at one bit width."""
    return {name: train_delta_specialist(config, source, run_dir, base, name, bits, log)
            for name in source.hierarchy.superclass_names}
