"""Configuration dataclasses, loadable from YAML with dotted command-line overrides.

A run is described by one :class:`RunConfig`. ``load_config("default",
["data.image_size=64"])`` reads the file, applies the overrides, and checks every key
and type, so a typo names the bad setting instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from supersub_tf.atomic import atomic_write_text
from supersub_tf.choices import (
    FLOAT_BITS_NAMES, NORMALIZATIONS, SAVEDMODEL_ROUTINGS, check_bits)
from supersub_tf.errors import ConfigError

#: ``train.distribution`` settings (see :mod:`supersub_tf.training.distribution`).
DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass
class SyntheticConfig:
    """Procedurally drawn images for tests and offline demos (``dataset: synthetic``)."""

    num_superclasses: int = 4
    subclasses_per_superclass: int = 3
    images_per_class: int = 60
    image_size: int = 32
    seed: int = 0


@dataclasses.dataclass
class DataConfig:
    """Which dataset, which hierarchy, and how images are prepared.

    Attributes:
        dataset: ``tiny_imagenet``, ``imagenet`` (ILSVRC-2012 folder), ``folder``
            (``root/<superclass>/<subclass>/*.jpg``), ``synthetic``, or
            ``tfds:<name>`` for ``imagenet2012``, ``imagenet_resized/32x32``,
            ``imagenet_resized/64x64`` and ``cifar100``.
        preset: Hierarchy: a preset name, a hierarchy JSON or a spec YAML. Empty for
            ``folder`` and ``synthetic``, whose hierarchy comes from the data.
        path: Dataset root, archive or tfds data_dir; empty uses the default location
            under ``$SUPERSUB_DATA_DIR``.
        image_size: Side of the square images the pipeline yields.
        normalization: ``imagenet`` (mean/std), ``unit`` ([0, 1]), ``none`` ([0, 255]),
            or a pretrained Keras network's own preprocessing: ``tf`` ([-1, 1],
            MobileNetV2), ``caffe`` (mean pixel subtracted, ResNet50); EfficientNet
            takes ``none``. ``train.pretrained`` requires its backbone's mode.
        augment: Random crop with padding and horizontal flip on the train split.
        crop_padding: Padding (pixels at ``image_size``) before the random crop.
        val_fraction: Share of each class held out as ``val`` when the source has no
            validation split (folder, synthetic).
        test_fraction: Share of each class held out of ``train`` as ``test``.
        split_seed: Seed of those held-out splits (deterministic per seed).
        max_per_class: Keep at most this many images per class and split (0: all);
            for quick runs.
        shuffle_buffer: Shuffle buffer of the train split.
        cache: Cache decoded, resized images in memory.
        verify_images: Decode every file once before use, so a corrupt file is named
            before training starts (a cached check; set false for huge folders).
        skip_bad_images: Leave corrupt files out (and name them in the run folder and
            the data summary) instead of failing.
        partial_val: Accept a validation split that covers only some images: label rows
            naming absent files are counted and left out, and classes without validation
            images are reported and left out of evaluation (training keeps them).
            Without it such a split is refused, naming the files and classes.
        download: Download Tiny ImageNet when the archive is absent.
        synthetic: Settings of the synthetic source.
    """

    dataset: str = "tiny_imagenet"
    preset: str = "tiny_imagenet_10"
    path: str = ""
    image_size: int = 64
    normalization: str = "imagenet"
    augment: bool = True
    crop_padding: int = 4
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    split_seed: int = 0
    max_per_class: int = 0
    shuffle_buffer: int = 10_000
    cache: bool = True
    verify_images: bool = True
    skip_bad_images: bool = False
    partial_val: bool = False
    download: bool = True
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ConfigError(f"data.image_size must be >= 8, got {self.image_size}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"data.normalization must be one of {', '.join(NORMALIZATIONS)}, "
                              f"got {self.normalization!r}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{key} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must be below 1")
        _require(self, "data", max_per_class=(0, "0 (all images) or more"),
                 crop_padding=(0, ">= 0"), shuffle_buffer=(1, ">= 1"))


@dataclasses.dataclass
class TrainConfig:
    """How a network is built and trained (the same budget for every kind of network).

    Attributes:
        model: A registered backbone (``supersub_tf.models.list_models()``).
        width: Channel width multiplier of the backbone.
        epochs: Passes over the network's training images.
        specialist_epochs: Epochs of each specialist (0: ``epochs``). A specialist sees
            only its superclass's images, so at equal epochs it takes about N times
            fewer optimizer steps than the vanilla network (N superclasses) and all N
            together cost one vanilla network; ``epochs * N`` gives each as many steps.
        batch_size: Training batch size.
        optimizer: ``sgd`` (with momentum) or ``adamw``.
        learning_rate: Peak learning rate (after warm-up).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: Decoupled weight decay (not applied to biases and batch-norm).
        schedule: ``cosine`` (to zero), ``step`` (times ``step_gamma`` at each of
            ``step_milestones``, fractions of training) or ``constant``.
        warmup_epochs: Linear warm-up from zero, in epochs (may be fractional).
        step_milestones: Fractions of training where the ``step`` schedule decays.
        step_gamma: Decay factor of the ``step`` schedule.
        label_smoothing: Label smoothing of the cross-entropy loss.
        mixed_precision: ``mixed_float16`` compute (for GPUs; logits stay float32).
        eval_batch_size: Batch size for evaluation and prediction.
        verbose: ``auto`` (progress bar in a terminal or notebook, one line per epoch
            otherwise, e.g. CI and papermill), or Keras' 0, 1, 2.
        backup_every_steps: BackupAndRestore frequency in steps; 0 backs up each epoch.
        generalist_fine_head: Weight of an auxiliary fine-class head's loss in the
            generalist (0: none). The head shares the trunk, is trained on the fine
            labels beside the superclass head, and is dropped from the stored system: it
            only shapes the trunk (and is a vanilla-size baseline of its own).
        distribution: The ``tf.distribute`` strategy that trains every network
            (:mod:`supersub_tf.training.distribution`): ``auto`` (MirroredStrategy when
            several GPUs are visible, else one device), ``none``, ``mirrored``,
            ``multi_worker`` (TF_CONFIG) or ``tpu``. ``batch_size`` is the global batch.
        deterministic: Bit-identical networks from the same seed and data
            (``tf.config.experimental.enable_op_determinism``, which also makes tf.data's
            parallel maps keep their order); off by default, it costs speed (see the
            README) and stays on for the rest of the process.
        pretrained: Start the networks from pretrained weights (a Keras Applications
            backbone, :mod:`supersub_tf.models.keras_applications`): ``none`` (random
            initialisation), ``imagenet`` (Keras' own download, cached in ``~/.keras``)
            or the path of a Keras weights file of the application (``.h5``, with or
            without its 1,000-way top, as Keras downloads them).
        pretrained_head: Start each fine-class head from the pretrained ImageNet head's
            rows of the data's classes (their class ids must be ImageNet-1k wnids; needs
            ``pretrained`` with a top: ``imagenet`` or a file holding one). Otherwise
            the head is new and fine-tuned with the trunk.
        freeze_batchnorm: Keep every batch norm's parameters and statistics as they are
            (inference mode) while training: the usual way to fine-tune a pretrained
            network on small batches.
        trunk_learning_rate: Multiplier of the learning rate (and so of the decoupled
            weight decay) for every trainable variable but the head's (the ``logits``
            layer, and a generalist's auxiliary fine head), in (0, 1]: fine-tuning a
            pretrained trunk gently while a head learns at the full rate. 1 (the
            default) trains everything at one rate. Delta specialists ignore it: their
            deltas start at zero and learn at ``deltas.learning_rate``.
    """

    model: str = "resnet8_s2"
    width: float = 1.0
    epochs: int = 9
    specialist_epochs: int = 0
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    step_milestones: list = dataclasses.field(default_factory=lambda: [0.5, 0.75])
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    mixed_precision: bool = False
    eval_batch_size: int = 256
    verbose: str = "auto"
    backup_every_steps: int = 0
    generalist_fine_head: float = 0.0
    distribution: str = "auto"
    deterministic: bool = False
    pretrained: str = "none"
    pretrained_head: bool = False
    freeze_batchnorm: bool = False
    trunk_learning_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"train.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                              f"got {self.distribution!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"train.optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ConfigError("train.schedule must be cosine, step or constant, got "
                              f"{self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("train.epochs and train.batch_size must be positive")
        if self.verbose not in ("auto", "0", "1", "2"):
            raise ConfigError(f"train.verbose must be auto, 0, 1 or 2, got {self.verbose!r}")
        self.pretrained = str(self.pretrained or "none")
        if self.pretrained.lower() == "none":
            self.pretrained = "none"
        if self.pretrained_head and self.pretrained == "none":
            raise ConfigError("train.pretrained_head needs train.pretrained (imagenet or a "
                              "weights file with its ImageNet top), got none")
        # train.model is checked against the model registry by the entry points
        # (supersub_tf.models.check_model_name): the config sits below the models.
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1), got "
                              f"{self.label_smoothing}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum must be in [0, 1), got {self.momentum}")
        rate = self.trunk_learning_rate
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool)
                and 0.0 < rate <= 1.0):
            raise ConfigError("train.trunk_learning_rate must be in (0, 1] (a multiplier of "
                              f"train.learning_rate), got {rate!r}")
        _require(self, "train", width=(_POSITIVE, "a positive number"),
                 learning_rate=(_POSITIVE, "positive"), weight_decay=(0, ">= 0"),
                 warmup_epochs=(0, ">= 0"), specialist_epochs=(0, ">= 0 (0: train.epochs)"),
                 eval_batch_size=(1, ">= 1"), backup_every_steps=(0, ">= 0"),
                 step_gamma=(_POSITIVE, "positive"), generalist_fine_head=(0, ">= 0"))


#: What the delta specialists adapt (and what stage 1 is): see :class:`DeltaConfig`.
DELTA_BASES = ("vanilla", "generalist")


@dataclasses.dataclass
class DeltaConfig:
    """Delta specialists: a trained network's weights plus trained (quantized) deltas.

    Attributes:
        base: The network every specialist adapts, and stage 1. ``vanilla`` (the
            default): the vanilla network's trunk, each specialist's head starting from
            the vanilla head's rows of its superclass (an untrained specialist is the
            vanilla network renormalised over its superclass), and stage 1 the vanilla
            network itself (``p(superclass)`` = its fine probabilities summed per
            superclass), so no generalist is trained. ``generalist``: the paper's design,
            a network trained on superclass labels as trunk and stage 1.
        bits: Bit widths to train and compare; ``float`` (or null) means float32 deltas
            without quantization-aware training. 2 to 8 bits are supported.
        from_stage: 0 gives every convolution a delta; ``s`` only those of trunk stages
            ``s`` and later, so the earlier stages stay exactly the generalist's (and
            their computation could be shared between the two stages).
        train_batchnorm: Each specialist trains its own batch-norm parameters and
            statistics in the delta region (stored in full: 4 floats per channel);
            otherwise they stay the generalist's.
        epochs: Fine-tuning epochs of each delta specialist (0: ``train.specialist_epochs``
            or ``train.epochs``).
        learning_rate: Peak learning rate of the fine-tuning (the deltas start at zero,
            from a trained network, so it is lower than training from scratch).
        weight_decay: Weight decay on deltas and heads (pulls deltas towards zero).
        catch_all: Catch-all specialists: each specialist gets one more output, "not my
            superclass", trained on this many other superclasses' images per image of
            its own (a fixed random sample; 0: plain specialists). Routing then weighs
            each routed block by ``1 - p(other)`` and renormalises, so top-k can reject
            a wrong route (Hinton et al. 2015's specialists).
        distill: Weight of the base network's soft targets (knowledge distillation,
            Hinton et al. 2015) in each specialist's targets: ``(1 - distill) * one-hot +
            distill * softmax(base logits of the superclass / T)``; 0: hard labels only.
            Needs ``base: vanilla`` (a generalist has no subclass logits to give).
        distill_temperature: ``T`` of those soft targets.
        topk: Superclasses per image for top-k routing.
        gate_tau: Confidence threshold of gated routing. With a vanilla stage 1, images
            whose top fine probability is at least this keep the vanilla network's own
            answer (no specialist pass), the others go to ``topk``; with a generalist,
            confident images go to one specialist.
    """

    base: str = "vanilla"
    bits: list = dataclasses.field(default_factory=lambda: [4])
    from_stage: int = 0
    train_batchnorm: bool = True
    epochs: int = 9
    learning_rate: float = 0.05
    weight_decay: float = 0.0005
    catch_all: float = 0.0
    distill: float = 0.0
    distill_temperature: float = 2.0
    topk: int = 2
    gate_tau: float = 0.5

    def __post_init__(self) -> None:
        if self.base not in DELTA_BASES:
            raise ConfigError(f"deltas.base must be one of {', '.join(DELTA_BASES)}, got "
                              f"{self.base!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ConfigError(f"deltas.distill must be in [0, 1], got {self.distill}")
        if self.distill and self.base != "vanilla":
            raise ConfigError("deltas.distill needs deltas.base=vanilla: a generalist has no "
                              "subclass probabilities to distil")
        if self.distill and self.catch_all:
            raise ConfigError("deltas.distill and deltas.catch_all cannot be combined (the "
                              "vanilla network has no 'other' output to distil)")
        if not (math.isfinite(self.distill_temperature) and self.distill_temperature > 0):
            raise ConfigError("deltas.distill_temperature must be positive, got "
                              f"{self.distill_temperature}")
        self.bits = [parse_bits(b) for b in self.bits]
        if not 0.0 <= self.gate_tau <= 1.0:
            raise ConfigError(f"deltas.gate_tau must be in [0, 1], got {self.gate_tau}")
        if self.from_stage < 0:
            raise ConfigError(f"deltas.from_stage must be >= 0, got {self.from_stage}")
        if self.topk < 1:
            raise ConfigError(f"deltas.topk must be >= 1, got {self.topk}")
        _require(self, "deltas", epochs=(0, ">= 0"), learning_rate=(_POSITIVE, "positive"),
                 weight_decay=(0, ">= 0"), catch_all=(0, ">= 0 (0: plain specialists)"))


_POSITIVE = 1e-300  # "greater than zero" for _require


def _require(config: Any, section: str, **minimums: tuple[float, str]) -> None:
    """Raises ConfigError naming ``section.key`` when a number is below its minimum
    (or not finite)."""
    for key, (minimum, rule) in minimums.items():
        value = getattr(config, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= minimum):
            raise ConfigError(f"{section}.{key} must be {rule}, got {value!r}")


def parse_bits(value: Any, what: str = "deltas.bits entries") -> int | None:
    """``float``/``none``/``fp32``/null -> None (float deltas); an integer from 2 to 8
    (:data:`~supersub_tf.choices.DELTA_BITS`, also as a string) -> that bit width.

    Raises:
        ConfigError: For anything else, naming ``what`` (the setting) and the value.
    """
    if value is None or (isinstance(value, str) and value.lower() in FLOAT_BITS_NAMES):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    return check_bits(value, ConfigError, what, also="float or ")


def bits_tag(bits: int | None) -> str:
    """A short name of a bit width for folders and tables: ``float``, ``8bit``."""
    return "float" if bits is None else f"{bits}bit"


@dataclasses.dataclass
class PreviewConfig:
    """The sample grid the main job writes."""

    images_per_superclass: int = 8
    split: str = "train"


#: LiteRT conversion modes (the same as supersub_tf.export.tflite.QUANTIZATIONS).
EXPORT_QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")


@dataclasses.dataclass
class ExportConfig:
    """What the main job exports at its end (see :mod:`supersub_tf.export`).

    The exported system is the one of the first bit width in ``deltas.bits``.

    Attributes:
        enabled: Export after the Super-Sub stage (needs ``supersub`` in ``networks``).
        output_dir: Folder of the exports: ``<output_dir>/<run name>`` (SavedModel) and
            ``<output_dir>/<run name>_tflite`` (LiteRT models and their manifest).
        savedmodel: Write the SavedModel (both stages in one graph).
        savedmodel_routing: The routing its graph implements: ``hard`` (one specialist
            pass per image), ``topk``, ``soft`` (every specialist, weighted by
            ``p(superclass)``) or ``gated``; ``topk`` and ``gated`` take ``deltas.topk``
            and ``deltas.gate_tau``.
        tflite: Write the LiteRT models.
        tflite_quantization: ``int8`` (full integer, calibrated on training images),
            ``int16x8`` (int16 activations), ``dynamic`` (int8 weights, float
            activations), ``float16`` or ``float32``.
        calibration_images: Training images per model for the int8 calibration.
        compare_images: Validation images on which the LiteRT pipeline is checked
            against the Keras pipeline (0: the whole split).
    """

    enabled: bool = True
    output_dir: str = "saved_models"
    savedmodel: bool = True
    savedmodel_routing: str = "gated"
    tflite: bool = True
    tflite_quantization: str = "int8"
    calibration_images: int = 256
    compare_images: int = 0

    def __post_init__(self) -> None:
        if self.savedmodel_routing not in SAVEDMODEL_ROUTINGS:
            raise ConfigError(f"export.savedmodel_routing must be one of "
                              f"{', '.join(SAVEDMODEL_ROUTINGS)}, got {self.savedmodel_routing!r}")
        if self.tflite_quantization not in EXPORT_QUANTIZATIONS:
            raise ConfigError(f"export.tflite_quantization must be one of "
                              f"{', '.join(EXPORT_QUANTIZATIONS)}, got "
                              f"{self.tflite_quantization!r}")
        if self.calibration_images < 1:
            raise ConfigError(f"export.calibration_images must be >= 1, got "
                              f"{self.calibration_images}")
        if self.compare_images < 0:
            raise ConfigError(f"export.compare_images must be >= 0, got {self.compare_images}")


@dataclasses.dataclass
class RunConfig:
    """Everything one run of the main job needs.

    The defaults are the main job's default config (``supersub_tf/configs/default.yaml`` spells them
    out; a test keeps the two equal).
    """

    name: str = "default"
    output_dir: str = "runs"
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    networks: list = dataclasses.field(default_factory=lambda: ["vanilla", "supersub"])
    deltas: DeltaConfig = dataclasses.field(default_factory=DeltaConfig)
    preview: PreviewConfig = dataclasses.field(default_factory=PreviewConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        kinds = ("vanilla", "generalist", "specialists", "supersub")
        unknown = set(self.networks) - set(kinds)
        if unknown:
            raise ConfigError(f"networks: unknown kind(s) {sorted(unknown)}; choose from "
                              f"{', '.join(kinds)}")
        name = str(self.name)
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise ConfigError(f"name must be a folder name (no '/', not empty), got {name!r}")
        if not str(self.output_dir):
            raise ConfigError("output_dir must not be empty (the default is runs)")
        if "supersub" in self.networks and not self.deltas.bits:
            raise ConfigError("deltas.bits is empty but networks include supersub; give at "
                              "least one bit width, e.g. deltas.bits=[8]")
        export = self.export
        if (self.deltas.catch_all and "supersub" in self.networks and export.enabled
                and export.savedmodel and export.savedmodel_routing != "hard"):
            # Checked before any training: the SavedModel's graph does not weigh routes
            # by catch-all specialists' p(other), which every routing but hard needs.
            raise ConfigError(f"deltas.catch_all with export.savedmodel_routing="
                              f"{export.savedmodel_routing}: the SavedModel routes catch-all "
                              "specialists hard only; set export.savedmodel_routing=hard")


#: Overrides of the ``--quick`` profile: a run small enough for a smoke test (minutes).
QUICK_PROFILE = ["name=quick", "data.max_per_class=40", "preview.images_per_superclass=6",
                 "train.model=resnet8_s2", "train.width=0.25", "train.epochs=1",
                 "train.batch_size=64", "train.warmup_epochs=0", "deltas.bits=[8]",
                 "deltas.epochs=1", "export.calibration_images=64"]


def config_from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Builds dataclass ``cls`` from a nested dict, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(where + k for k in unknown))}; "
                          f"valid keys here: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = config_from_dict(hint, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, where + key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif hint is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    else:
        return value
    raise ConfigError(f"setting {key} expects {hint.__name__}, got {value!r}")


def flatten_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested settings dict as ``{"section.key": value}`` (for comparing configs)."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``key.sub=value`` overrides (values parsed as YAML scalars) to a dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # absent, or an empty section (``train:``)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                cls: type = RunConfig) -> Any:
    """Reads a YAML config (or defaults when ``path`` is None) and applies overrides."""
    data = {}
    if path is not None:
        resolved = resolve_config_path(path)
        data = _read_yaml(resolved, "config file")
        # Before the overrides, so a scalar where a section belongs is blamed on the
        # file (an override, e.g. one of --quick's, would otherwise be named).
        check_sections(cls, data, str(resolved))
    data = apply_overrides(data, list(overrides or []))
    return config_from_dict(cls, data)


def check_sections(cls: type, data: dict[str, Any], source: str, where: str = "") -> None:
    """Raises ConfigError naming ``source`` and the key when a section of dataclass
    ``cls`` (``train``, ``data.synthetic``, ...) holds a value that is not a mapping.

    An empty section (``train:`` with nothing under it) is allowed: it means the defaults.
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        value, hint = data.get(field.name), hints[field.name]
        if not dataclasses.is_dataclass(hint) or value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}{field.name} must be a section (a mapping of "
                              f"settings, e.g. {field.name}: {{key: value}}), got {value!r}")
        check_sections(hint, value, source, f"{where}{field.name}.")


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Writes the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


BUILTIN_CONFIGS = Path(__file__).resolve().parent / "configs"


def builtin_config_names() -> list[str]:
    """The names ``--config`` accepts besides file paths (``default``, ``scaling``, ...)."""
    return sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml"))


def resolve_config_path(value: str | os.PathLike) -> Path:
    """A config file from a path or a built-in config's name.

    An existing file wins; otherwise ``NAME`` or ``NAME.yaml`` names a built-in config
    (package data, so it resolves from any working directory and from an installed
    wheel), and so does ``configs/NAME.yaml``, where the configs lived before they
    became package data.

    Raises:
        ConfigError: When it is neither a file nor a built-in name (the built-ins are
            listed).
    """
    path = Path(value)
    if path.is_file():
        return path
    parts = path.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs"):
        builtin = BUILTIN_CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if builtin.is_file():
            return builtin
    raise ConfigError(f"config file not found: {value} (nor a built-in config: "
                      f"{', '.join(builtin_config_names())})")


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings (section: ...), got a "
                          f"{type(data).__name__}")
    return data


def _resolve_base(value: Any, folder: Path) -> Any:
    """A ``base`` path (relative to ``folder``) read into its mapping; others unchanged."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return _read_yaml(path if path.is_absolute() else folder / path, "base: run config")
    return value


def load_study_config(cls: type, path: str | os.PathLike | None = None,
                      overrides: list[str] | None = None) -> Any:
    """Reads a study config (a dataclass with a ``base`` RunConfig) from YAML.

    ``base`` may be a path to a run config (relative to the study file's folder) or a
    mapping of RunConfig settings. Overrides are ``key=value`` items applied in order:
    ``base.train.epochs=2`` changes the base run config, ``base=other.yaml`` replaces it
    (a path relative to the working directory).
    """
    data: dict[str, Any] = {}
    folder = Path.cwd()
    if path is not None:
        path = resolve_config_path(path)
        data = _read_yaml(path, "config file")
        folder = path.parent
    data["base"] = _resolve_base(data.get("base"), folder) or {}
    if path is not None:  # as in load_config: the file is blamed, not an override
        check_sections(cls, data, str(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if sep and key.strip() == "base":
            data["base"] = _resolve_base(yaml.safe_load(raw) if raw else None, Path.cwd()) or {}
        else:
            apply_overrides(data, [item])
    return config_from_dict(cls, data)
