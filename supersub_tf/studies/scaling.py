"""The scaling study: Super-Sub against simply making the vanilla network bigger.

A vanilla network over all fine classes is trained at several sizes (backbone and
width), and the smaller ones also get a Super-Sub system (generalist + delta
specialists at each configured bit width). Every point uses the base run config with
only ``train.model`` and ``train.width`` changed: the same data, augmentation, epochs
and optimizer. Each point then gets a record of what it costs and what it achieves
(:mod:`~supersub_tf.studies.scaling_records`).

Layout (``<output_dir>/<name>/``)::

    scaling_config.yaml               the resolved study config
    <model>_w<width>/                 one run directory per size (see supersub_tf.run):
        vanilla/, generalist/, deltas/<bits>/, systems/<bits>/, supersub/<bits>.json
        scaling/<kind>.json           cached measurements (latency, MACs, top-5)
    scaling.json                      every point's record
    scaling.md, plots/*.png           the report (supersub_tf.analysis.scaling_plots)

The study is resumable like the main job: a finished network is kept (its
``metrics.json``), a finished Super-Sub system too (its ``supersub/<bits>.json``), so a
rerun trains only what is missing, and a killed run continues where it stopped. A
point folder trained with other settings is refused, naming the settings that differ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import (
    RunConfig, bits_tag, config_to_dict, load_study_config, parse_bits, save_config)
from supersub_tf.errors import ConfigError
from supersub_tf.freshness import ensure_fresh
from supersub_tf.run_lock import run_lock

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
            try:
                bits.append(parse_bits(value))
            except ConfigError:
                raise ConfigError(f"bits: entries must be float or 2..8, got {value!r}") from None
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


def point_config(config: ScalingConfig, size: dict[str, Any]) -> RunConfig:
    """The run config of one size: the base with only the backbone changed.

    Its run directory is ``<output_dir>/<name>/<model>_w<width>``; its networks are the
    vanilla one, plus for a Super-Sub size the delta specialists at ``config.bits`` on the
    base network (``deltas.base``: the vanilla network itself, or a generalist trained
    too).
    """
    base = config.base
    supersub = is_supersub_size(config, size)
    networks = ["vanilla", *(["generalist"] if base.deltas.base == "generalist" else []),
                "supersub"] if supersub else ["vanilla"]
    return dataclasses.replace(
        base, name=point_name(size), output_dir=str(study_dir(config)),
        train=dataclasses.replace(base.train, model=size["model"], width=size["width"]),
        networks=networks,
        deltas=dataclasses.replace(base.deltas, bits=list(config.bits)) if supersub
        else base.deltas)


# ------------------------------------------------------------------------------ training


def point_is_trained(config: RunConfig) -> bool:
    """True when every network and system of a point's config is finished."""
    from supersub_tf.deltas.storage import MANIFEST
    from supersub_tf.run import run_dir_of

    run_dir = run_dir_of(config)
    done = (run_dir / "vanilla" / "metrics.json").is_file()
    if "supersub" in config.networks:
        for tag in map(bits_tag, config.deltas.bits):
            done &= (run_dir / "supersub" / f"{tag}.json").is_file()
            done &= (run_dir / "systems" / tag / MANIFEST).is_file()
    return done


def train_point(config: RunConfig, source=None, log=print, retrain: bool = False) -> None:
    """Trains what one point lacks, with the main job's resumable stages.

    Raises:
        StaleRunError: When the point's folder holds stages trained with other settings
            (``retrain`` trains those again instead).
    """
    from supersub_tf.run import run_dir_of, supersub_stage, train_stage

    run_dir = run_dir_of(config)
    ensure_fresh(config, run_dir, retrain, log)
    if point_is_trained(config):
        log(f"[scale {config.name}] already trained")
        return
    if not (run_dir / "vanilla" / "metrics.json").is_file():
        train_stage(config, "vanilla", source, log)
    if "supersub" in config.networks:
        supersub_stage(config, source, log)  # trains the base network first if missing


# ------------------------------------------------------------------------------ runner


def run_scaling(config: ScalingConfig, log=print, retrain: bool = False) -> Path:
    """Trains every missing point, measures all of them, writes the report.

    Holds the study folder's lock; every point is checked for stale stages before any
    training (``retrain`` trains those again instead of refusing).

    Returns:
        The study folder ``<output_dir>/<name>`` (``scaling.json``, ``scaling.md``,
        ``plots/``).
    """
    out = study_dir(config)
    with run_lock(out):
        return _run_study(config, out, log, retrain)


def _run_study(config: ScalingConfig, out: Path, log, retrain: bool) -> Path:
    from supersub_tf.analysis.scaling_plots import points_table, write_scaling_outputs
    from supersub_tf.studies.scaling_records import (
        supersub_record, timing_images, vanilla_record)
    from supersub_tf.data import create_source, load_dataset
    from supersub_tf.run import run_dir_of

    start = time.time()
    save_config(config, out / "scaling_config.yaml")
    configs = [point_config(config, size) for size in config.sizes]
    tags = ", ".join(map(bits_tag, config.bits))
    log(f"[scale] {config.name}: {len(configs)} vanilla sizes "
        f"({', '.join(c.name for c in configs)}); Super-Sub ({tags}) on "
        f"{', '.join(map(point_name, config.supersub_sizes)) or 'none'}")
    for cfg in configs:  # refuse stale folders before hours of training
        ensure_fresh(cfg, run_dir_of(cfg), retrain, log)
    source = create_source(config.base.data)
    for i, cfg in enumerate(configs, 1):
        log(f"[scale] point {i}/{len(configs)}: {cfg.name} ({', '.join(cfg.networks)})")
        train_point(cfg, source, log, retrain)
    trained = time.time()
    base = config.base
    val = load_dataset(base.data, "val", training=False, batch_size=base.train.eval_batch_size,
                       source=source)
    images = timing_images(val.dataset, max(config.timing.latency_batch,
                                            config.timing.throughput_batch))
    points = []
    for size in config.sizes:
        log(f"[scale] measuring {point_name(size)}")
        points.append(vanilla_record(config, size, images, log))
        if is_supersub_size(config, size):
            for bits in config.bits:
                points.append(supersub_record(config, size, bits, val, images, log))
    study = {
        "name": config.name, "study_dir": str(out),
        "config": config_to_dict(config),
        "dataset": base.data.dataset, "hierarchy": source.hierarchy.name,
        "num_classes": source.hierarchy.num_classes,
        "num_superclasses": source.hierarchy.num_superclasses,
        "image_size": base.data.image_size, "epochs": base.train.epochs,
        "wall_seconds": round(time.time() - start, 1),
        "measure_seconds": round(time.time() - trained, 1),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "points": points,
    }
    atomic_write_text(out / "scaling.json", json.dumps(study, indent=2) + "\n")
    report = write_scaling_outputs(study, out)
    log(points_table(points))
    log(f"[scale] {report} ({time.time() - start:.0f} s)")
    return out


__all__ = ["SCALING_QUICK_PROFILE", "ScalingConfig", "TimingConfig", "load_scaling_config",
           "parse_size", "point_config", "point_name", "run_scaling", "study_dir",
           "train_point"]
