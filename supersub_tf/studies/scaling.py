"""The scaling study: Super-Sub against simply making the vanilla network bigger.

A vanilla network over all fine classes is trained at several sizes (backbone and
width), and the smaller ones also get a Super-Sub system (delta specialists at each
configured bit width on the base network of ``deltas.base``: the vanilla network itself,
or a generalist). Every point uses the base run config with only ``train.model`` and
``train.width`` changed: the same data, augmentation, epochs and optimizer. Each point
then gets a record of what it costs and what it achieves
(:mod:`~supersub_tf.studies.scaling_records`). The settings are
:mod:`~supersub_tf.studies.scaling_config`.

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
import time
from pathlib import Path
from typing import Any

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, bits_tag, config_to_dict, save_config
from supersub_tf.run.freshness import ensure_fresh
from supersub_tf.run.layout import RunLayout
from supersub_tf.run.lock import run_lock
from supersub_tf.studies.scaling_config import (  # noqa: F401 (the study's settings, re-exported)
    DEFAULT_SCALING_CONFIG, SCALING_QUICK_PROFILE, ScalingConfig, TimingConfig,
    is_supersub_size, load_scaling_config, parse_size, point_name, study_dir)


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

    layout = RunLayout(run_dir_of(config))
    done = layout.metrics("vanilla").is_file()
    if "supersub" in config.networks:
        for tag in map(bits_tag, config.deltas.bits):
            done &= layout.supersub_result(tag).is_file()
            done &= (layout.system(tag) / MANIFEST).is_file()
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
    if not RunLayout(run_dir).metrics("vanilla").is_file():
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
