"""Learning-rate schedules (linear warm-up followed by cosine, step or constant decay)
and the optimizers that follow them, with an optional lower rate for the trunk."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

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


class _TrunkRate:
    """Mixin for a tf_keras optimizer: every variable but the head's learns at
    ``trunk_rate`` times the learning rate (discriminative fine-tuning).

    tf_keras optimizers have one learning rate and no per-variable multiplier, so the
    multiplier is applied where the optimizer reads its rate for one variable: its
    ``update_step`` and its decoupled weight decay, both of which read
    ``self.learning_rate``. For a trunk variable that read returns the scheduled rate
    times ``trunk_rate``: exactly a lower learning rate, for SGD (with or without
    (Nesterov) momentum) *and* for AdamW, weight decay included. Scaling the trunk's
    gradients instead would be exact for SGD only: Adam divides the gradient scale out,
    and decoupled weight decay never sees the gradient. The optimizer's slot variables
    are the plain optimizer's, so its checkpoints (BackupAndRestore) are the same.

    The multiplier is Python state set around each per-variable read while the training
    step is traced; under ``tf.distribute`` the replica threads run one at a time, so
    each read sees its own variable's multiplier.
    """

    _rate_scale = 1.0  # the multiplier of the variable being updated (1 otherwise)

    def __init__(self, *args, trunk_rate: float, head_variables: Iterable, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trunk_rate = float(trunk_rate)
        self._head_keys = frozenset(self._var_key(v) for v in head_variables)

    @property
    def learning_rate(self):
        rate = super().learning_rate
        return rate if self._rate_scale == 1.0 else rate * self._rate_scale

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        keras.optimizers.Optimizer.learning_rate.fset(self, value)

    @contextlib.contextmanager
    def _trunk_scale(self):
        self._rate_scale = self.trunk_rate
        try:
            yield
        finally:  # not a saved-and-restored value: the replica threads interleave
            self._rate_scale = 1.0

    def _is_head(self, variable) -> bool:
        return self._var_key(variable) in self._head_keys

    def update_step(self, gradient, variable):
        if self._is_head(variable):
            return super().update_step(gradient, variable)
        with self._trunk_scale():
            return super().update_step(gradient, variable)

    def _apply_weight_decay(self, variables) -> None:
        super()._apply_weight_decay([v for v in variables if self._is_head(v)])
        with self._trunk_scale():
            super()._apply_weight_decay([v for v in variables if not self._is_head(v)])


class TrunkRateSGD(_TrunkRate, keras.optimizers.SGD):
    """SGD with a lower learning rate for every variable but the head's (see
    :class:`_TrunkRate`)."""


class TrunkRateAdamW(_TrunkRate, keras.optimizers.AdamW):
    """AdamW with a lower learning rate for every variable but the head's (see
    :class:`_TrunkRate`)."""


def make_optimizer(config: TrainConfig, steps_per_epoch: int,
                   head_variables: Iterable | None = None) -> keras.optimizers.Optimizer:
    """SGD with (Nesterov) momentum or AdamW, with decoupled weight decay that skips
    biases and batch-norm parameters.

    With ``config.trunk_learning_rate`` below 1, every variable but ``head_variables``
    (the head layer's) learns at that multiple of the schedule's rate.
    """
    schedule = make_schedule(config, steps_per_epoch)
    decay = config.weight_decay or None
    trunk = config.trunk_learning_rate
    lower = ({"trunk_rate": trunk, "head_variables": list(head_variables or [])}
             if trunk != 1.0 else {})
    if config.optimizer == "sgd":
        optimizer = (TrunkRateSGD if lower else keras.optimizers.SGD)(
            schedule, momentum=config.momentum, nesterov=config.nesterov,
            weight_decay=decay, **lower)
    else:
        optimizer = (TrunkRateAdamW if lower else keras.optimizers.AdamW)(
            schedule, weight_decay=config.weight_decay, **lower)
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
