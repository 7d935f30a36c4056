"""Finished runs: what a run folder still lacks, and the main job resumed for exactly that.

The main job reuses every finished stage, so completing a run is running it again; this
module adds the two things readers of runs (the benchmarks, notebooks) need on top:
:func:`missing_parts` says what a run of a config lacks, and :func:`complete_run` trains
only that, under the run's lock (:mod:`supersub_tf.run.lock`) and after the freshness
check (:mod:`supersub_tf.run.freshness`). A run that has every part but lacks some bit widths
gets only their delta specialists and a fresh report.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

from supersub_tf.config import RunConfig, bits_tag, load_config, save_config
from supersub_tf.run.freshness import ensure_fresh
from supersub_tf.run.layout import TOP_NETWORKS, RunLayout
from supersub_tf.run.lock import run_lock


def superclass_names(run_dir: str | Path) -> list[str] | None:
    """The run's superclasses, in hierarchy order, from its ``data_summary.json``."""
    path = RunLayout(run_dir).data_summary
    if not path.is_file():
        return None
    return [row["superclass"] for row in json.loads(path.read_text())["rows"]]


def missing_parts(run_dir: str | Path, config: RunConfig) -> list[str]:
    """What a finished run of ``config`` has that ``run_dir`` lacks (empty: complete).

    Complete means: ``report.json`` lists every network of ``config.networks`` (each
    superclass's specialist), and for ``supersub`` a ``supersub/<tag>.json`` for every
    bit width in ``config.deltas.bits`` is present and in the report.
    """
    layout = RunLayout(run_dir)
    if not layout.report_json.is_file():
        return [RunLayout.REPORT_JSON]
    report = json.loads(layout.report_json.read_text())
    networks = report.get("networks") or {}
    missing = [kind for kind in TOP_NETWORKS
               if kind in config.networks and kind not in networks]
    if "specialists" in config.networks:
        names = superclass_names(run_dir)
        if names is None:
            missing.append(RunLayout.DATA_SUMMARY)
        else:
            missing += [f"specialists/{n}" for n in names if f"specialist/{n}" not in networks]
    if "supersub" in config.networks:
        in_report = (report.get("analysis") or {}).get("supersub") or {}
        for bits in config.deltas.bits:
            tag = bits_tag(bits)
            if not layout.supersub_result(tag).is_file() or tag not in in_report:
                missing.append(f"supersub/{tag}")
    return missing


def complete_run(config: RunConfig, run_dir: str | Path, retrain: bool = False,
                 wait: bool = False, log: Callable[[str], None] = print) -> list[str]:
    """Trains what ``run_dir`` lacks for ``config``; returns what was missing before.

    Raises:
        StaleRunError: When stages were trained with other settings (unless ``retrain``,
            which trains them again), naming each stage and setting.
        RunLockedError: When another command holds the run (unless ``wait``).
    """
    run_dir = Path(run_dir)
    with run_lock(run_dir, wait=wait):
        # The stale stages are gone after this (with retrain), but report.json still
        # lists them: they are missing, whatever the report says.
        removed = ensure_fresh(config, run_dir, retrain, log)
        missing = ["stale stages"] if removed else missing_parts(run_dir, config)
        if missing:
            log(f"[run] {run_dir} lacks {', '.join(missing)}: running the main job "
                "(finished parts are reused)")
            _train_missing(config, run_dir, missing, log)
        return missing


def _train_missing(config: RunConfig, run_dir: Path, missing: list[str], log) -> None:
    from supersub_tf.run import analyze_run, run_pipeline, supersub_stage

    if not all(m.startswith("supersub/") for m in missing):
        run_pipeline(config, log=log, retrain=True)  # stale stages were asked for
        return
    # Only bit widths are missing: train their delta specialists, report the union.
    tags = {m.split("/", 1)[1] for m in missing}
    partial = copy.deepcopy(config)
    partial.deltas.bits = [b for b in config.deltas.bits if bits_tag(b) in tags]
    saved = load_config(RunLayout(run_dir).config)
    union = copy.deepcopy(config)
    union.deltas.bits = list(saved.deltas.bits) + [
        b for b in config.deltas.bits if b not in saved.deltas.bits]
    save_config(union, RunLayout(run_dir).config)
    supersub_stage(partial, log=log)  # only missing widths: nothing is stale
    analyze_run(union, run_dir, log=log)
