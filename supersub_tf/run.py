"""The main job: the paper's pipeline, stage by stage, into one run directory.

``python -m supersub_tf run`` calls :func:`run_pipeline`. So far the pipeline builds
the dataset, writes its per-superclass summary and a preview grid, and a report that
links them; the training, analysis, Super-Sub and export stages extend it.

Run directory layout (``<output_dir>/<name>/``)::

    config.yaml          the resolved config
    data_summary.json    images per superclass and split
    plots/preview_<split>.png
    report.md            everything above, readable
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import RunConfig, save_config
from supersub_tf.data import create_source
from supersub_tf.data.preview import write_preview
from supersub_tf.data.summary import format_table, split_counts


def run_dir_of(config: RunConfig) -> Path:
    """``<output_dir>/<name>``: where a run writes everything."""
    return Path(config.output_dir) / config.name


def run_pipeline(config: RunConfig, log=print) -> Path:
    """Runs every stage that exists on ``config``; returns the run directory."""
    start = time.time()
    run_dir = run_dir_of(config)
    (run_dir / "plots").mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")

    log(f"[data] {config.data.dataset} with hierarchy {config.data.preset or '(from data)'}")
    source = create_source(config.data)
    summary = split_counts(source)
    atomic_write_text(run_dir / "data_summary.json", json.dumps(summary, indent=2) + "\n")
    log(format_table(summary))

    preview = write_preview(source, run_dir / "plots" / f"preview_{config.preview.split}.png",
                            config.preview.split, config.preview.images_per_superclass)
    log(f"[data] preview grid: {preview}")
    skipped = sum(len(v) for v in source.skipped.values())

    report = [
        f"# Run `{config.name}`",
        "",
        f"Dataset: {summary['dataset']}; hierarchy `{summary['hierarchy']}`, "
        f"{source.hierarchy.num_superclasses} superclasses, {source.hierarchy.num_classes} "
        f"classes; images at {config.data.image_size}x{config.data.image_size}.",
        "",
        "## Data",
        "",
        format_table(summary, markdown=True),
        "",
        f"Undecodable files skipped: {skipped}." if skipped else "",
        f"![{config.preview.split} samples](plots/{preview.name})",
        "",
        f"Wall time: {time.time() - start:.1f} s.",
        "",
    ]
    atomic_write_text(run_dir / "report.md", "\n".join(line for line in report) )
    log(f"[run] report: {run_dir / 'report.md'} ({time.time() - start:.1f} s)")
    return run_dir
