"""The scaling study's settings: :class:`ScalingConfig`, its sizes and point names.

Apart from :mod:`~supersub_tf.studies.scaling` (which trains the points) so that the
records (:mod:`~supersub_tf.studies.scaling_records`) can read the settings without
importing the module that imports them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from supersub_tf.config import RunConfig, load_study_config, parse_bits
from supersub_tf.errors import ConfigError

#: The config file of the study; ``base`` paths in it are relative to its folder.
DEFAULT_SCALING_CONFIG = "scaling"  # built-in (supersub_tf/configs/scaling.yaml)

_SIZE_NAME = re.compile(r"^(?P<model>[A-Za-z0-9_]+?)_w(?P<width>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)$")


@dataclasses.dataclass
class TimingConfig:
    """How inference is timed on the CPU (``time.perf_counter`` medians).

    Attributes:
        enabled: Measure latency and throughput (off: those columns stay empty).
        latency_batch: Images per call for the latency (1: ms per image).
        throughput_batch: Images per call for the throughput (images/s).
        latency_repetitions: Timed calls at ``latency_batch``.
        throughput_repetitions: Timed calls at ``throughput_batch``.
        warmup: Untimed calls before each series (graph tracing, caches).
    """

    enabled: bool = True
    latency_batch: int = 1
    throughput_batch: int = 256
    latency_repetitions: int = 30
    throughput_repetitions: int = 5
    warmup: int = 2

    def __post_init__(self) -> None:
        for key in ("latency_batch", "throughput_batch", "latency_repetitions",
                    "throughput_repetitions"):
            if getattr(self, key) < 1:
                raise ConfigError(f"timing.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup < 0:
            raise ConfigError(f"timing.warmup must be >= 0, got {self.warmup}")


def _default_sizes() -> list:
    return [{"model": "resnet8", "width": 0.25}, {"model": "resnet8", "width": 0.5},
            {"model": "resnet20", "width": 0.5}, {"model": "resnet20", "width": 1.0}]


def _default_supersub_sizes() -> list:
    return [{"model": "resnet8", "width": 0.25}, {"model": "resnet8", "width": 0.5},
            {"model": "resnet20", "width": 0.5}]


@dataclasses.dataclass
class ScalingConfig:
    """The scaling study (``supersub_tf/configs/scaling.yaml`` spells out these defaults).

    Attributes:
        name: The study's folder under ``output_dir``.
        output_dir: Where study folders go.
        base: The run config every point starts from (a mapping of RunConfig settings,
            or in YAML a path to a run config file); each point changes only
            ``train.model`` and ``train.width``. Its ``name``, ``output_dir``,
            ``networks`` and ``deltas.bits`` are set by the study.
        sizes: The vanilla sizes, each ``{model: resnet20, width: 0.5}`` or the point's
            folder name ``resnet20_w0.5``; at least two, best spanning 10x parameters.
        supersub_sizes: Those of ``sizes`` that also get a Super-Sub system.
        bits: Delta bit widths of the Super-Sub systems (``float`` for float32 deltas).
        timing: How inference is timed.
    """

    name: str = "scaling"
    output_dir: str = "runs"
    base: RunConfig = dataclasses.field(default_factory=RunConfig)
    sizes: list = dataclasses.field(default_factory=_default_sizes)
    supersub_sizes: list = dataclasses.field(default_factory=_default_supersub_sizes)
    bits: list = dataclasses.field(default_factory=lambda: [8])
    timing: TimingConfig = dataclasses.field(default_factory=TimingConfig)

    def __post_init__(self) -> None:
        self.sizes = [parse_size(s, f"sizes[{i}]") for i, s in enumerate(self.sizes)]
        if len(self.sizes) < 2:
            raise ConfigError(f"sizes: a scaling study needs at least 2 vanilla sizes, got "
                              f"{len(self.sizes)}")
        names = [point_name(s) for s in self.sizes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"sizes: {', '.join(twice)} listed more than once")
        self.supersub_sizes = [parse_size(s, f"supersub_sizes[{i}]")
                               for i, s in enumerate(self.supersub_sizes)]
        for size in self.supersub_sizes:
            if point_name(size) not in names:
                raise ConfigError(f"supersub_sizes: {point_name(size)} is not one of the "
                                  f"sizes ({', '.join(names)})")
        bits = []
        for value in self.bits:
            bits.append(parse_bits(value, "bits: entries"))
        if self.supersub_sizes and not bits:
            raise ConfigError("bits: supersub_sizes needs at least one bit width")
        self.bits = bits
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a folder name, got {self.name!r}")


#: Overrides of the quick profile (``scale --quick``): small data, one epoch, three
#: small sizes and one 8-bit system; about two minutes on two cores.
SCALING_QUICK_PROFILE = [
    "name=scaling_quick", "base.data.max_per_class=20", "base.preview.images_per_superclass=6",
    "base.train.epochs=1", "base.train.batch_size=32", "base.train.warmup_epochs=0",
    "sizes=[resnet8_w0.25, resnet8_w0.5, resnet20_w0.5]", "supersub_sizes=[resnet8_w0.25]",
    "bits=[8]", "timing.latency_repetitions=10", "timing.throughput_repetitions=2",
    "timing.throughput_batch=128", "timing.warmup=1"]


# ------------------------------------------------------------------------------ sizes


def parse_size(value: Any, where: str = "sizes") -> dict[str, Any]:
    """``{model, width}`` from a mapping or a point name such as ``resnet20_w0.5``.

    Raises:
        ConfigError: Naming ``where`` on a malformed entry, an unregistered model or a
            width that is not a positive number.
    """
    from supersub_tf.models import list_models

    if isinstance(value, str):
        match = _SIZE_NAME.match(value.strip())
        if not match:
            raise ConfigError(f"{where}: {value!r} is neither {{model: ..., width: ...}} nor "
                              "a name like resnet20_w0.5")
        model, width = match["model"], match["width"]
    elif isinstance(value, dict):
        unknown = set(value) - {"model", "width"}
        if unknown or "model" not in value:
            raise ConfigError(f"{where}: expected keys model and width, got {sorted(value)}")
        model, width = value["model"], value.get("width", 1.0)
    else:
        raise ConfigError(f"{where}: expected {{model: ..., width: ...}} or a name like "
                          f"resnet20_w0.5, got {value!r}")
    if model not in list_models():
        raise ConfigError(f"{where}: model {model!r} is not a registered backbone; choose one "
                          f"of {list_models()}")
    try:
        width = float(width)
    except (TypeError, ValueError):
        width = math.nan
    if isinstance(value, dict) and isinstance(value.get("width"), bool) \
            or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"{where}: width must be a positive number, got {value!r}")
    return {"model": str(model), "width": width}


def point_name(size: dict[str, Any]) -> str:
    """The folder of one size: ``resnet20_w0.5``, ``resnet20_w1``."""
    return f"{size['model']}_w{size['width']:g}"


# ------------------------------------------------------------------------------ config


def load_scaling_config(path: str | os.PathLike | None = None,
                        overrides: list[str] | None = None) -> ScalingConfig:
    """Reads a scaling YAML (or the defaults when ``path`` is None) and applies overrides.

    ``base`` may be a path to a run config (relative to the scaling file's folder) or a
    mapping of RunConfig settings; see :func:`~supersub_tf.config.load_study_config`.
    ``sizes=[resnet8_w0.25, resnet20_w1]`` replaces a list. Every key is checked; an
    unknown one is named with its full path.
    """
    return load_study_config(ScalingConfig, path, overrides)


def study_dir(config: ScalingConfig) -> Path:
    """``<output_dir>/<name>``: the study's folder."""
    return Path(config.output_dir) / config.name


def is_supersub_size(config: ScalingConfig, size: dict[str, Any]) -> bool:
    return point_name(size) in {point_name(s) for s in config.supersub_sizes}
