"""Learning-rate schedules: linear warm-up followed by cosine, step or constant decay."""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from supersub_tf.config import TrainConfig


@keras.saving.register_keras_serializable(package="supersub_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then a decay.

    Args:
        peak: Learning rate at the end of warm-up.
        total_steps: Length of training in optimizer steps.
        warmup_steps: Steps of linear warm-up (0 for none).
        kind: ``cosine`` (to zero at ``total_steps``), ``step`` or ``constant``.
        milestones: For ``step``: fractions of ``total_steps`` where the rate is
            multiplied by ``gamma``.
        gamma: Decay factor of the ``step`` schedule.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 kind: str = "cosine", milestones: tuple[float, ...] = (0.5, 0.75),
                 gamma: float = 0.1) -> None:
        super().__init__()
        self.peak = float(peak)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.kind = kind
        self.milestones = tuple(float(m) for m in milestones)
        self.gamma = float(gamma)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.cast(self.warmup_steps, tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - warm) / decay_steps, 0.0, 1.0)
        if self.kind == "cosine":
            decayed = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        elif self.kind == "step":
            passed = tf.add_n([tf.cast(step >= m * self.total_steps, tf.float32)
                               for m in self.milestones] or [tf.constant(0.0)])
            decayed = self.peak * tf.pow(self.gamma, passed)
        else:
            decayed = tf.constant(self.peak)
        if self.warmup_steps == 0:
            return decayed
        return tf.where(step < warm, self.peak * (step + 1.0) / warm, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "kind": self.kind,
                "milestones": list(self.milestones), "gamma": self.gamma}


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> WarmupSchedule:
    """The schedule a :class:`TrainConfig` describes, in optimizer steps."""
    return WarmupSchedule(config.learning_rate, config.epochs * steps_per_epoch,
                          int(round(config.warmup_epochs * steps_per_epoch)),
                          config.schedule, tuple(config.step_milestones), config.step_gamma)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD with (Nesterov) momentum or AdamW, with decoupled weight decay that skips
    biases and batch-norm parameters."""
    schedule = make_schedule(config, steps_per_epoch)
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                         nesterov=config.nesterov, weight_decay=decay)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
