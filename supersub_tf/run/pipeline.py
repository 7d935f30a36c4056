"""The main job: the paper's pipeline, stage by stage, into one run directory.

``python -m supersub_tf run`` calls :func:`run_pipeline`:

1. **data**: build the dataset, write its per-superclass summary and a preview grid;
2. **networks**: train the vanilla network, the generalist and the independent
   specialists (``config.networks`` picks which); a network whose folder says it is
   finished is loaded instead, and an interrupted one resumes from its backup;
3. **supersub**: delta specialists fine-tuned from the generalist at each bit width,
   stored compactly, and the two-stage pipeline evaluated under each routing mode;
4. **export**: the first bit width's system as one SavedModel and as LiteRT models
   (``export.output_dir``), each checked against the Keras pipeline on the validation
   split (agreement, accuracy, bytes, images/s);
5. **analysis**: where the vanilla network's mistakes fall, specialists against it,
   the generalist; figures and JSON;
6. **report**: ``report.md`` with every number and figure.

Every stage writes into the run folder ``<output_dir>/<name>/`` at the place its
:class:`~supersub_tf.run.layout.RunLayout` names.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, bits_tag, save_config
from supersub_tf.data import SELF_DESCRIBING, create_source
from supersub_tf.data.preview import preview_gaps, write_preview
from supersub_tf.data.source import ImageSource
from supersub_tf.data.summary import format_gaps, format_table, split_counts
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.run.freshness import ensure_fresh
from supersub_tf.run.layout import METRICS, TOP_NETWORKS, RunLayout
from supersub_tf.models import check_model_name
from supersub_tf.manifest_files import MANIFEST
from supersub_tf.run.lock import run_lock

NETWORK_KINDS = ("vanilla", "generalist", "specialists", "supersub")


def _start_distribution(config: RunConfig) -> None:
    """Makes the run's tf.distribute strategy now: ``multi_worker`` must exist before
    TensorFlow runs any op (loading the data does)."""
    from supersub_tf.training.distribution import strategy_for

    strategy_for(config.train.distribution)


def run_dir_of(config: RunConfig) -> Path:
    """``<output_dir>/<name>``: where a run writes everything."""
    return RunLayout.of(config).root


def data_stage(config: RunConfig, run_dir: Path, log=print,
               source: ImageSource | None = None) -> tuple[ImageSource, dict, str]:
    """Builds the source (unless given), writes the data summary and the preview grid."""
    source = source or create_source(config.data)
    layout = RunLayout(run_dir)
    summary = split_counts(source)
    atomic_write_text(layout.data_summary, json.dumps(summary, indent=2) + "\n")
    log(format_table(summary))
    gaps = format_gaps(summary)
    if gaps:  # the files and classes a run left out, every one by name, next to its numbers
        atomic_write_text(layout.data_gaps, gaps + "\n")
        log(f"[data] {format_gaps(summary, every_name=False)} (every name in "
            f"{layout.data_gaps})")
    split = config.preview.split
    try:
        preview = write_preview(source, layout.preview(split), split,
                                config.preview.images_per_superclass)
    except DataError as err:  # a picture is never worth stopping the run over
        log(f"[data] no preview grid of the {split} split: {err}")
        return source, summary, ""
    missing = preview_gaps(source, split)
    log(f"[data] preview grid: {preview}" + (f" ({missing})" if missing else ""))
    return source, summary, preview.name


def _ensure_fresh(config: RunConfig, kinds: Sequence[str], run_dir: Path, retrain: bool,
                  log) -> None:
    """The run's one freshness check (:func:`~supersub_tf.run.freshness.ensure_fresh`),
    before TensorFlow even loads: every stage folder ``config`` reuses and those of
    ``kinds``, also a kind the config's networks leave out (``supersub``: the delta
    specialists and their base network). The trainers below check nothing themselves."""
    wanted = dataclasses.replace(config, networks=[
        *config.networks, *(k for k in kinds if k not in config.networks)])
    ensure_fresh(wanted, run_dir, retrain, log)


def _checked_run_dir(config: RunConfig) -> Path:
    """The run directory of an entry point, after the one check the config cannot make
    itself (it sits below the model registry): ``train.model`` is registered."""
    check_model_name(config.train.model)
    return run_dir_of(config)


def train_stage(config: RunConfig, kinds: str | list[str] | None = None,
                source: ImageSource | None = None, log=print,
                retrain: bool = False) -> dict[str, dict]:
    """Trains (or loads) the networks of ``kinds`` (default ``config.networks``).

    Holds the run's lock, and first checks every finished stage of the run against the
    config (:func:`~supersub_tf.run.freshness.ensure_fresh`; ``retrain`` deletes the stale
    ones instead of refusing), so ``config.yaml`` never describes networks trained
    otherwise.

    Returns:
        Network name (``vanilla``, ``generalist``, ``specialist/<superclass>``) -> its
        validation metrics.
    """
    from supersub_tf.training.networks import train_network, train_specialists

    run_dir = _checked_run_dir(config)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or config.networks)
    with run_lock(run_dir):
        _ensure_fresh(config, kinds, run_dir, retrain, log)
        _start_distribution(config)
        source = source or create_source(config.data)  # bad data fails before any write
        save_config(config, RunLayout(run_dir).config)
        metrics = {}
        for kind in NETWORK_KINDS:
            if kind not in kinds or kind == "supersub":
                continue
            if kind == "specialists":
                for name, net in train_specialists(config, source, run_dir, log).items():
                    metrics[f"specialist/{name}"] = net.metrics
            else:
                metrics[kind] = train_network(config, source, kind, run_dir, log=log).metrics
        return metrics


def supersub_stage(config: RunConfig, source: ImageSource | None = None,
                   log=print, retrain: bool = False) -> dict[str, dict]:
    """Delta specialists at each configured bit width, their stored systems, and the
    two-stage pipeline's validation accuracy under each routing mode.

    Needs the run's trained base network (``deltas.base``: the vanilla network or the
    generalist; trained here when missing). Writes ``systems/<bits>/`` (the compact storage
    format) and ``supersub/<bits>.json``; returns those results by bit-width tag. Holds
    the run's lock and refuses (or, with ``retrain``, retrains) stale stages first.
    """
    run_dir = _checked_run_dir(config)
    with run_lock(run_dir):
        _ensure_fresh(config, ["supersub"], run_dir, retrain, log)
        _start_distribution(config)
        return _supersub_results(config, run_dir, source or create_source(config.data), log)


def _supersub_results(config: RunConfig, run_dir: Path, source: ImageSource,
                      log) -> dict[str, dict]:
    from supersub_tf.data import load_dataset
    from supersub_tf.deltas.backbone import Backbone
    from supersub_tf.deltas.storage import save_system
    from supersub_tf.deltas.storage_report import storage_report
    from supersub_tf.deltas.system_checks import stage_one_head
    from supersub_tf.supersub.evaluate import collect_predictions, pipeline_metrics
    from supersub_tf.supersub.pipeline import SuperSubPipeline
    from supersub_tf.supersub.routing import ALL_ROUTINGS, gated_curve
    from supersub_tf.deltas.specialist_training import train_delta_specialists
    from supersub_tf.training.networks import load_network

    hierarchy = source.hierarchy
    layout = RunLayout(run_dir)
    base_kind = config.deltas.base  # the network every specialist adapts, and stage 1
    if not layout.metrics(base_kind).exists():
        train_stage(config, base_kind, source, log)
    base = load_network(layout.network(base_kind)).model
    val = load_dataset(config.data, "val", training=False,
                       batch_size=config.train.eval_batch_size, source=source)
    backbone = Backbone.from_config(config)
    results = {}
    for bits in config.deltas.bits:
        tag = bits_tag(bits)
        delta_sets = train_delta_specialists(config, source, run_dir, base, bits, log)
        settings = {"bits": bits, "from_stage": config.deltas.from_stage,
                    "train_batchnorm": config.deltas.train_batchnorm,
                    "catch_all": bool(config.deltas.catch_all),
                    # recorded only when not the paper's generalist (older systems lack it)
                    **({"base": base_kind} if base_kind != "generalist" else {})}
        system = save_system(layout.system(tag), base, delta_sets, hierarchy,
                             backbone, settings)
        pipeline = SuperSubPipeline(base, delta_sets, hierarchy,
                                    stage_one_head=stage_one_head(settings))
        k, tau = config.deltas.topk, config.deltas.gate_tau
        probs, labels = collect_predictions(pipeline, val.dataset, ALL_ROUTINGS, k=k, tau=tau)
        result = {"bits": bits, "system": str(system), "storage": storage_report(system),
                  "base": base_kind,
                  "topk": k, "gate_tau": tau, "catch_all": config.deltas.catch_all,
                  "distill": config.deltas.distill,
                  "generalist_fine_head": config.train.generalist_fine_head,
                  "routing": {r: {**pipeline_metrics(probs[r], probs["superclass_probs"],
                                                     labels, hierarchy),
                                  "specialist_passes": float(probs[f"{r}_passes"])}
                              for r in ALL_ROUTINGS},
                  "gated_curve": gated_curve(probs["superclass_probs"],
                                             probs["subclass_probs"], labels["fine"],
                                             hierarchy, k,
                                             other_probs=probs.get("other_probs"),
                                             stage_one_fine=probs.get("stage_one_fine")),
                  "training_compute": training_compute(run_dir, base_kind, tag),
                  **_vanilla_comparison(run_dir, probs, labels, hierarchy, k, tau, base_kind)}
        atomic_write_text(layout.supersub_result(tag), json.dumps(result, indent=2) + "\n")
        log(f"[supersub {tag}] top-1 hard {result['routing']['hard']['top1']:.3f}, "
            f"top-{k} {result['routing']['topk']['top1']:.3f}, "
            f"soft {result['routing']['soft']['top1']:.3f}, gated (tau {tau}) "
            f"{result['routing']['gated']['top1']:.3f}, "
            f"oracle {result['routing']['oracle']['top1']:.3f}; storage "
            f"{result['storage']['a']:.3f}N + 1")
        results[tag] = result
    return results


def training_compute(run_dir: Path, base_kind: str, tag: str) -> dict:
    """Training-image passes of the system, in epochs of the training set: its base
    network's and every delta specialist's (each on its superclass's images). A vanilla
    network trained that many epochs from scratch is its compute-matched baseline."""
    layout = RunLayout(run_dir)
    base = json.loads(layout.metrics(base_kind).read_text())
    specialists = [json.loads(p.read_text())
                   for p in sorted(layout.deltas(tag).glob(f"*/{METRICS}"))]
    images = base["train_images"]
    base_epochs = base["epochs"]
    specialist_epochs = sum(m["train_images"] * m["epochs"] for m in specialists) / images
    return {"base": base_kind, "base_epochs": base_epochs,
            "specialist_epochs_equivalent": round(specialist_epochs, 3),
            "epochs_equivalent": round(base_epochs + specialist_epochs, 3),
            "train_seconds": round(base["train_seconds"]
                                   + sum(m["train_seconds"] for m in specialists), 1)}


def _vanilla_comparison(run_dir: Path, probs: dict, labels: dict, hierarchy, k: int,
                        tau: float, base_kind: str) -> dict:
    """Super-Sub against the run's vanilla network on the validation split (and routed
    by the run's generalist, when it has one and the specialists are not its own);
    empty when the run has no finished vanilla network."""
    from supersub_tf.supersub.evaluate import vanilla_comparison
    from supersub_tf.training.predictions import PREDICTIONS, load_predictions

    layout = RunLayout(run_dir)
    if not layout.metrics("vanilla").is_file():
        return {}
    vanilla, vanilla_labels = load_predictions(layout.vanilla / PREDICTIONS)
    if not np.array_equal(vanilla_labels["fine"], labels["fine"]):
        return {}  # another split or order: no comparison rather than a wrong one
    generalist = None
    if base_kind != "generalist" and layout.metrics("generalist").is_file():
        generalist, _ = load_predictions(layout.generalist / PREDICTIONS)
    return {"vanilla_comparison": vanilla_comparison(probs, labels, hierarchy, vanilla, k, tau,
                                                     generalist)}


def export_stage(config: RunConfig, source: ImageSource | None = None,
                 log=print) -> dict:
    """Exports the system of the first bit width in ``config.deltas.bits``.

    Writes ``<export.output_dir>/<name>`` (one SavedModel running both stages) and
    ``<export.output_dir>/<name>_tflite`` (LiteRT models, manifest and runtime), runs
    both and the Keras pipeline over the validation split (or ``export.compare_images``
    of it), and records sizes, agreement, accuracy and speed in ``export.json``.

    Raises:
        ConfigError: When the run has no stored system of that bit width yet.
    """
    run_dir = _checked_run_dir(config)
    with run_lock(run_dir):
        return _export(config, run_dir, source, log)


def check_export_targets(config: RunConfig, run_dir: Path) -> None:
    """Refuses to replace a finished export of another system, before any work.

    The main job writes ``<export.output_dir>/<name>`` and ``<name>_tflite``, named by
    the run, not by the system: a rerun whose first bit width (``deltas.bits``) differs,
    or another runs folder with the same name, would silently replace the exports of
    the system that made them. An export of this very system (a rerun, ``--retrain``)
    is replaced as before; a folder without a recorded source is left to the export's
    own check (:func:`~supersub_tf.atomic.atomic_directory`).

    Raises:
        ConfigError: Naming the folder, the system it holds and the settings to change.
    """
    from supersub_tf.export.savedmodel import METADATA_FILE  # imports TensorFlow

    system_dir = RunLayout(run_dir).system(config.deltas.bits[0]).resolve()
    out_root = Path(config.export.output_dir)
    targets = []
    if config.export.savedmodel:
        targets.append((out_root / config.name, METADATA_FILE, "source"))
    if config.export.tflite:
        targets.append((out_root / f"{config.name}_tflite", MANIFEST, "source_system"))
    for folder, record, key in targets:
        try:
            source = json.loads((folder / record).read_text(encoding="utf-8"))[key]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(source, str) and Path(source).resolve() != system_dir:
            raise ConfigError(
                f"{folder} holds the export of {source}; this run would replace it with "
                f"the export of {system_dir} (the first of deltas.bits): set "
                f"export.output_dir to another folder or use another run name, or delete "
                f"{folder} to replace it")


def _export(config: RunConfig, run_dir: Path, source: ImageSource | None, log) -> dict:
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.data.arrays import calibration_images, evaluation_images
    from supersub_tf.export.measure import (
        export_size_report, format_export_size_report, format_measurement, keras_predict,
        measure_export, savedmodel_predict)
    from supersub_tf.export.savedmodel import export_savedmodel
    from supersub_tf.export.tflite import CALIBRATED, export_tflite

    settings = config.export
    layout = RunLayout(run_dir)
    tag = bits_tag(config.deltas.bits[0])
    system_dir = layout.system(tag)
    if not (system_dir / MANIFEST).is_file():
        raise ConfigError(f"{system_dir}: no stored Super-Sub system to export; run the "
                          "supersub stage first (networks must include supersub)")
    check_export_targets(config, run_dir)
    source = source or create_source(config.data)
    system = load_system(system_dir)
    images, fine = evaluation_images(config.data, source=source,
                                     count=settings.compare_images, seed=config.seed)
    reference = keras_predict(system, images)
    result = {"system": str(system_dir), "bits": tag, "images": int(len(images)),
              "keras_accuracy": float((reference["fine"] == fine).mean())}
    out_root = Path(settings.output_dir)
    if settings.savedmodel:
        started = time.time()
        path = export_savedmodel(system, out_root / config.name,
                                 routing=settings.savedmodel_routing, k=config.deltas.topk,
                                 tau=config.deltas.gate_tau)
        sizes = export_size_report(path, system_dir)
        served = savedmodel_predict(path, images)
        same_routing = reference if settings.savedmodel_routing == "hard" else keras_predict(
            system, images, routing=settings.savedmodel_routing, k=config.deltas.topk,
            tau=config.deltas.gate_tau)
        result["savedmodel"] = {
            "path": str(path), "sizes": sizes,
            "routing": settings.savedmodel_routing,
            "fine_agreement": float((served["fine"] == same_routing["fine"]).mean()),
            "accuracy": float((served["fine"] == fine).mean()),
            "images_per_second": len(images) / served["seconds"] if served["seconds"] else 0.0}
        log(f"[export] {format_export_size_report(sizes)} (exported in "
            f"{time.time() - started:.0f} s)")
        log(f"[export] SavedModel: {result['savedmodel']['fine_agreement']:.2%} identical fine "
            f"labels vs Keras, top-1 {result['savedmodel']['accuracy']:.3f}")
    if settings.tflite:
        started = time.time()
        calibration, calibration_fine = (
            calibration_images(config.data, source=source,
                               per_superclass=settings.calibration_images, seed=config.seed)
            if settings.tflite_quantization in CALIBRATED else (None, None))
        path = export_tflite(system, out_root / f"{config.name}_tflite", calibration,
                             calibration_fine, quantization=settings.tflite_quantization,
                             calibration_size=settings.calibration_images, seed=config.seed)
        log(f"[export] LiteRT models in {path} (exported in {time.time() - started:.0f} s)")
        result["tflite"] = measure_export(path, system, images, fine, reference=reference)
        log("[export] " + format_measurement(result["tflite"]).replace("\n", "\n[export] "))
    atomic_write_text(layout.export_record, json.dumps(result, indent=2) + "\n")
    return result


def finished_networks(run_dir: Path) -> dict[str, dict]:
    """Metrics of every finished network in a run directory."""
    layout = RunLayout(run_dir)
    found = {}
    for kind in TOP_NETWORKS:
        if layout.metrics(kind).exists():
            found[kind] = json.loads(layout.metrics(kind).read_text())
    for path in sorted(layout.specialists.glob(f"*/{METRICS}")):
        found[f"specialist/{path.parent.name}"] = json.loads(path.read_text())
    return found


def analyze_run(config: RunConfig, run_dir: str | Path | None = None,
                source: ImageSource | None = None, log=print,
                started: float | None = None, legs: Sequence[float] = ()) -> Path:
    """Analysis and report of a run directory's networks; returns the report path.

    ``started`` (a ``time.time()`` value) dates the wall time the report states; by
    default the analysis's own start. ``legs``: seconds of each invocation of a resumed
    run.
    """
    from supersub_tf.analysis.report import write_report
    from supersub_tf.analysis.run_analysis import analyze_networks

    start = time.time()
    run_dir = Path(run_dir) if run_dir else run_dir_of(config)
    layout = RunLayout(run_dir)
    source = source or create_source(config.data)
    data_summary = (json.loads(layout.data_summary.read_text()) if layout.data_summary.exists()
                    else split_counts(source))
    preview = layout.preview(config.preview.split)
    analysis = analyze_networks(run_dir, source.hierarchy, config.data, source, log=log)
    # Only what this config made: results of other bit widths or an export the config
    # turned off may be left in the folder from an earlier run.

    supersub = "supersub" in config.networks
    tags = [bits_tag(b) for b in config.deltas.bits] if supersub else []
    analysis["supersub"] = {tag: json.loads(layout.supersub_result(tag).read_text())
                            for tag in tags if layout.supersub_result(tag).is_file()}
    if supersub and config.export.enabled and layout.export_record.is_file():
        analysis["export"] = json.loads(layout.export_record.read_text())
    skipped = sum(len(v) for v in source.skipped.values())
    notes = [f"Undecodable files skipped: {skipped} (named in `data_gaps.txt`).", ""] if skipped else []
    notes += [f"{note}", ""] if (note := "; ".join(source.notes)) else []
    if source.note_names:  # the notes name some classes; data_gaps.txt names them all
        notes += ["Every class the notes above leave unnamed is listed in `data_gaps.txt`.", ""]
    report = write_report(run_dir, f"Run `{config.name}`", data_summary,
                          preview.name if preview.exists() else None,
                          finished_networks(run_dir), analysis,
                          time.time() - (started or start), notes, legs)
    log(f"[report] {report}")
    return report


def run_pipeline(config: RunConfig, log=print, retrain: bool = False) -> Path:
    """Runs every stage on ``config``; returns the run directory.

    Holds the run's lock throughout; finished stages are reused only when their
    recorded settings match ``config`` (otherwise it refuses before any work, or with
    ``retrain`` trains exactly the stale stages again).
    """
    run_dir = _checked_run_dir(config)
    with run_lock(run_dir):
        _ensure_fresh(config, (), run_dir, retrain, log)
        _start_distribution(config)
        return _run_all(config, run_dir, log)


def _hierarchy_origin(config: RunConfig, source: ImageSource) -> str:
    """The hierarchy's name and where it came from, for the run's first line: a folder
    tree's own (``data.preset`` is ignored there), or the preset's."""
    name = source.hierarchy.name
    if config.data.dataset.split(":", 1)[0] in SELF_DESCRIBING:
        return f"{name} (from the data)"
    return name if config.data.preset == name else f"{name} ({config.data.preset})"


class _Invocations:
    """``wall_time.json``: the seconds of each invocation of a run, so a run killed and
    resumed reports its whole cost; an invocation is brought up to date after each
    stage, so a killed one counts until its last finished stage."""

    def __init__(self, run_dir: Path) -> None:
        self.path, self.start = RunLayout(run_dir).wall_time, time.time()
        try:
            self.legs = [float(x) for x in json.loads(self.path.read_text())["seconds"]]
        except (OSError, ValueError, KeyError, TypeError):
            self.legs = []
        self.legs.append(0.0)

    def mark(self) -> list[float]:
        self.legs[-1] = round(time.time() - self.start, 1)
        atomic_write_text(self.path, json.dumps({"seconds": self.legs}) + "\n")
        return self.legs


def _run_all(config: RunConfig, run_dir: Path, log) -> Path:
    source = create_source(config.data)  # a bad preset or dataset fails before any write
    log(f"[data] {source.description} with hierarchy {_hierarchy_origin(config, source)}")
    if "supersub" in config.networks and config.export.enabled:
        check_export_targets(config, run_dir)  # not after an hour of training
    layout = RunLayout(run_dir)
    layout.plots.mkdir(parents=True, exist_ok=True)
    invocations = _Invocations(run_dir)
    start = invocations.start
    save_config(config, layout.config)
    data_stage(config, run_dir, log, source)
    if config.networks:
        train_stage(config, source=source, log=log)
        invocations.mark()
    supersub = {}
    if "supersub" in config.networks:
        supersub = supersub_stage(config, source, log)
        invocations.mark()
        if config.export.enabled:
            export_stage(config, source, log)
            invocations.mark()
    analyze_run(config, run_dir, source, log, started=start, legs=invocations.mark())
    if supersub:  # the report's comparison table, also in the log
        from supersub_tf.analysis.report import supersub_table

        vanilla = finished_networks(run_dir).get("vanilla", {})
        log(supersub_table(supersub, vanilla.get("top1")))
    elapsed = time.time() - start
    legs = invocations.mark()
    log(f"[run] {run_dir} finished in {elapsed:.0f} s"
        + (f" ({sum(legs):.0f} s over {len(legs)} invocations)" if len(legs) > 1 else ""))
    return run_dir
