"""Figures and the Markdown report of the scaling study (:mod:`supersub_tf.studies.scaling`).

Everything here reads the study's point records (``scaling.json``'s ``points``), so a
report can be rebuilt from that file alone (:func:`rebuild_scaling_report`). Figures
use ``matplotlib.figure.Figure`` without pyplot and are written atomically.

* ``plots/top1_vs_<cost>.png``: validation top-1 against each cost (parameters,
  device-resident parameters, stored bytes, FLOPs, CPU latency), log x: the vanilla
  family as a line, each Super-Sub system as a star joined by a dotted line to the
  vanilla network of its own backbone;
* ``plots/overfitting.png``: training and validation accuracy per epoch of every
  vanilla size, and their gap (with the Super-Sub generalists' and mean specialists');
* ``scaling.md``: the table of points, each Super-Sub system against the vanilla family
  interpolated to the same cost, the figures, and how every column is measured.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from supersub_tf.analysis.plots import new_figure, save_figure
from supersub_tf.atomic import atomic_write_text
from supersub_tf.errors import DataError
from supersub_tf.tables import markdown_table, pct
from supersub_tf.tables import points as signed_points

#: Cost axes of the trade-off figures: record key, axis label, file stem.
COSTS = (
    ("total_parameters", "parameters (Super-Sub: base network + every specialist's deltas, "
                         "head, batch norm)", "parameters"),
    ("device_parameters", "parameters resident on the device", "device_parameters"),
    ("stored_bytes", "stored weight bytes (float32; Super-Sub: + packed deltas)",
     "stored_bytes"),
    ("flops_per_image", "FLOPs per image (2 x conv/dense MACs)", "flops"),
    ("train_flops", "training FLOPs (6 x MACs x training-image passes)", "train_flops"),
    ("latency_ms", "CPU latency, ms per call (median)", "latency"),
)


def _is_vanilla(point: Mapping[str, Any]) -> bool:
    return point["kind"] == "vanilla"


def _value(point: Mapping[str, Any], key: str) -> float | None:
    value = point.get(key)
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        return None
    return float(value)


def vanilla_family(points: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """``(cost, top1)`` of the vanilla points that have ``key``, smallest network first."""
    vanilla = sorted((p for p in points if _is_vanilla(p) and _value(p, key) is not None
                      and p.get("top1") is not None),
                     key=lambda p: (p.get("total_parameters") or 0, _value(p, key)))
    return [(_value(p, key), float(p["top1"])) for p in vanilla]


def interpolate_vanilla(points: Sequence[Mapping[str, Any]], key: str,
                        x: float) -> float | None:
    """The vanilla family's top-1 at cost ``x``: piecewise linear in ``log(cost)``
    between the vanilla points. None outside their range, with fewer than two, or when
    the cost does not grow with the network (noisy timings), where it means nothing."""
    family = vanilla_family(points, key)
    costs = [c for c, _ in family]
    if len(family) < 2 or x is None or any(b < a for a, b in zip(costs, costs[1:])) \
            or not costs[0] <= x <= costs[-1]:
        return None
    return float(np.interp(math.log(x), np.log(costs), [t for _, t in family]))


def _monotonic(points: Sequence[Mapping[str, Any]], key: str) -> bool:
    costs = [c for c, _ in vanilla_family(points, key)]
    return all(b >= a for a, b in zip(costs, costs[1:]))


def _log_axis(axis) -> None:
    """Log scale with ticks at 1, 2 and 5 per decade in engineering notation (20k, 1M)."""
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_formatter(NullFormatter())


def plot_tradeoff(points: Sequence[Mapping[str, Any]], key: str, xlabel: str,
                  path: str | os.PathLike, title: str | None = None) -> Path | None:
    """Top-1 against one cost (log x); None (and no file) when no point has that cost."""
    usable = [p for p in points if _value(p, key) is not None and p.get("top1") is not None]
    if not usable:
        return None
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    vanilla = sorted((p for p in usable if _is_vanilla(p)),
                     key=lambda p: (p.get("total_parameters") or 0, _value(p, key)))
    if vanilla:
        ax.plot([_value(p, key) for p in vanilla], [p["top1"] for p in vanilla], "o-",
                color="C0", label="vanilla network, bigger and bigger")
        for p in vanilla:
            ax.annotate(p["point"], (_value(p, key), p["top1"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7, color="C0")
    by_backbone = {p["point"]: p for p in vanilla}
    kinds = sorted({p["kind"] for p in usable if not _is_vanilla(p)})
    for i, kind in enumerate(kinds):
        systems = [p for p in usable if p["kind"] == kind]
        color = f"C{i + 1}"
        ax.plot([_value(p, key) for p in systems], [p["top1"] for p in systems], "*",
                markersize=13, color=color, linestyle="none",
                label=kind.replace("supersub-", "Super-Sub, ") + " deltas")
        for p in systems:
            ax.annotate(p["point"], (_value(p, key), p["top1"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=7, color=color)
            twin = by_backbone.get(p["point"])
            if twin is not None:
                ax.plot([_value(twin, key), _value(p, key)], [twin["top1"], p["top1"]], ":",
                        color="grey", linewidth=0.9)
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("validation top-1")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title or f"Top-1 against {xlabel.split(' (')[0]}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_overfitting(points: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Accuracy per epoch (train dashed, validation solid) of every vanilla size, and the
    train - validation gap per epoch, with each Super-Sub system's generalist (dash-dot)
    and mean specialist (dotted). None when no point has curves."""
    vanilla = [p for p in points if _is_vanilla(p) and (p.get("curves") or {}).get("vanilla")]
    systems = [p for p in points if not _is_vanilla(p) and p.get("curves")]
    if not vanilla and not systems:
        return None
    fig = new_figure(11.0, 4.4)
    acc_ax, gap_ax = fig.subplots(1, 2)

    def gap(curve: Mapping[str, list]) -> list[float]:
        return [math.nan if a is None or v is None else a - v
                for a, v in zip(curve["accuracy"], curve["val_accuracy"])]

    def nan(values: list) -> list[float]:
        return [math.nan if v is None else v for v in values]

    for i, p in enumerate(vanilla):
        curve, color = p["curves"]["vanilla"], f"C{i % 10}"
        acc_ax.plot(curve["epoch"], nan(curve["accuracy"]), "--o", color=color, markersize=3,
                    label=f"{p['point']} train")
        acc_ax.plot(curve["epoch"], nan(curve["val_accuracy"]), "-o", color=color,
                    markersize=3, label=f"{p['point']} val")
        gap_ax.plot(curve["epoch"], gap(curve), "-o", color=color, markersize=3,
                    label=f"{p['point']} vanilla")
    for j, p in enumerate(systems):
        color = f"C{(len(vanilla) + j) % 10}"
        for part, style in (("generalist", "-."), ("specialists_mean", ":")):
            curve = p["curves"].get(part)
            if curve:
                gap_ax.plot(curve["epoch"], gap(curve), style, marker="s", markersize=3,
                            color=color, label=f"{p['point']} {p['kind']} "
                                               f"{part.replace('_mean', ' (mean)')}")
    epochs = sorted({e for ax in (acc_ax, gap_ax) for line in ax.lines
                     for e in line.get_xdata()})
    for ax, ylabel in ((acc_ax, "top-1 accuracy (vanilla networks)"),
                       (gap_ax, "train - validation accuracy")):
        if 0 < len(epochs) <= 12:
            ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    gap_ax.axhline(0.0, color="black", linewidth=0.6)
    fig.suptitle("Over-fitting: training against validation accuracy per epoch", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ tables


def _kb(value: float | None) -> str | None:
    return None if value is None else f"{value / 1e3:,.1f}"


def _m(value: float | None) -> str | None:
    return None if value is None else f"{value / 1e6:,.2f}"


def _num(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:,.{digits}f}"


POINTS_HEADER = ["point", "system", "parameters", "on device", "stored kB", "files kB",
                 "MFLOPs/img", "ms (batch 1)", "img/s", "top-1", "top-5", "train acc",
                 "train-val gap (points)", "train s"]


def points_rows(points: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One row per point for :data:`POINTS_HEADER`."""
    rows = []
    for p in points:
        gap = p.get("train_val_gap")
        train = p.get("final_train_accuracy")
        if gap is None and p.get("specialist_gap") is not None:  # Super-Sub: its parts
            train = None
            gap_text = (f"gen {signed_points(p.get('generalist_gap'))}, "
                        f"spec {signed_points(p['specialist_gap'])}")
        else:
            gap_text = signed_points(gap)
        rows.append([p["point"], "vanilla" if _is_vanilla(p) else p["kind"],
                     p.get("total_parameters"), p.get("device_parameters"),
                     _kb(p.get("stored_bytes")), _kb(p.get("file_bytes")),
                     _m(p.get("flops_per_image")), _num(p.get("latency_ms"), 2),
                     _num(p.get("throughput_ips"), 0), pct(p.get("top1")),
                     pct(p.get("top5")), pct(train), gap_text,
                     None if p.get("train_seconds") is None else round(p["train_seconds"])])
    return rows


def points_table(points: Sequence[Mapping[str, Any]]) -> str:
    """The points as a Markdown table (also what the runner logs); the timing columns
    name their batch sizes."""
    header = list(POINTS_HEADER)
    timing = next((p["timing"] for p in points if p.get("timing")), None)
    if timing:
        header[7] = f"ms (batch {timing['latency_batch']})"
        header[8] = f"img/s (batch {timing['throughput_batch']})"
    return markdown_table(header, points_rows(points))


def equal_cost_rows(points: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """For each Super-Sub point and cost: its top-1, the vanilla family's top-1
    interpolated at the same cost, and the difference (percentage points)."""
    rows = []
    for p in points:
        if _is_vanilla(p):
            continue
        for key, label, _ in COSTS:
            x = _value(p, key)
            if x is None:
                continue
            vanilla = interpolate_vanilla(points, key, x)
            why = ("outside the vanilla range" if _monotonic(points, key)
                   else "vanilla cost not growing with size")
            rows.append([f"{p['point']} {p['kind']}", label.split(" (")[0], pct(p["top1"]),
                         pct(vanilla) if vanilla is not None else why,
                         signed_points(None if vanilla is None else p["top1"] - vanilla)])
    return rows


NOTES = [
    "How the columns are measured:",
    "",
    "- **parameters**: every weight of the vanilla network (batch-norm statistics included); "
    "for Super-Sub, the generalist's plus every specialist's delta values, head and own "
    "batch-norm weights. **on device**: what one forward pass keeps resident: the "
    "generalist's for Super-Sub (stage 2 writes a specialist's deltas into the same trunk "
    "in place; the k-bit codes and the generalist's host copies live in host memory).",
    "- **stored kB**: the weight payload: float32 weights (parameters x 4 bytes); for "
    "Super-Sub the float32 generalist plus each specialist's packed codes, float32 scales "
    "and float32 owned weights. **files kB**: the files on disk: the vanilla network's "
    "HDF5 weights file, the Super-Sub system folder (HDF5 generalist, npz specialists, "
    "manifest). HDF5 metadata (about 80 kB per file) dominates the smallest networks, so "
    "the figures use the payload.",
    "- **MFLOPs/img**: analytic, 2 x the multiply-accumulates of the convolution and dense "
    "layers per image (batch norm folded; additions, ReLUs and pooling not counted); "
    "Super-Sub under hard routing runs the generalist and then one specialist (the trunk "
    "twice, the generalist's head and one specialist head, mean over superclasses); the "
    "delta swaps are not counted here, but are in the measured times.",
    "- **ms (batch 1)**, **img/s**: CPU wall time, median over repetitions after warm-up "
    "calls, on validation images: a call on the latency batch, and images per second at "
    "the throughput batch (Super-Sub: `SuperSubPipeline.predict` with hard routing, one "
    "delta swap per superclass routed to in the batch). Shared or busy CPUs make these "
    "noisy; compare points of one study, measured one after the other.",
    "- **top-1**, **top-5**: validation accuracy over all fine classes; Super-Sub with hard "
    "routing, whose top-5 ranks only the routed superclass's subclasses.",
    "- **train acc**, **train-val gap**: the last epoch's training accuracy (a running mean "
    "over that epoch, on augmented images) and its difference to the validation accuracy; "
    "for Super-Sub the gaps of the generalist (superclasses) and of the specialists' mean "
    "(subclasses, true superclass given).",
]


def write_scaling_report(study: Mapping[str, Any], out_dir: str | os.PathLike,
                         figures: Mapping[str, str] | None = None) -> Path:
    """Writes ``scaling.md`` from a study record (``scaling.json``'s content)."""
    out = Path(out_dir)
    points = study["points"]
    lines = [f"# Scaling study `{study.get('name', out.name)}`: Super-Sub against a bigger "
             "vanilla network", ""]
    config = study.get("config") or {}
    base = config.get("base") or {}
    train, data = base.get("train") or {}, base.get("data") or {}
    if study.get("dataset"):
        lines += [f"Dataset {study['dataset']}, hierarchy `{study.get('hierarchy')}` "
                  f"({study.get('num_classes')} classes in {study.get('num_superclasses')} "
                  f"superclasses), {study.get('image_size')}x{study.get('image_size')} "
                  f"images, {study.get('epochs')} epoch{'' if study.get('epochs') == 1 else 's'}"
                  + (f", batch {train['batch_size']}, {train['optimizer']} lr "
                     f"{train['learning_rate']}" if train else "")
                  + (", augmented" if data.get("augment") else "") + ". Every point uses "
                  "the same data, augmentation and training settings; only the backbone "
                  "(`train.model`, `train.width`) changes.", ""]
    lines += ["## Points", "", points_table(points), ""]
    rows = equal_cost_rows(points)
    if rows:
        lines += ["## Super-Sub against the vanilla family at equal cost", "",
                  "The vanilla family's top-1 at the Super-Sub system's cost, interpolated "
                  "linearly in log(cost) between the two vanilla sizes around it. A positive "
                  "difference: the Super-Sub system beats making the vanilla network bigger "
                  "by that cost.", "",
                  markdown_table(["system", "cost", "Super-Sub top-1", "vanilla top-1",
                                  "difference (points)"], rows), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}](plots/{file})" for name, file in figures.items()]
        lines += [""]
    lines += NOTES + [""]
    if study.get("wall_seconds") is not None:
        lines += [f"Wall time of this study run: {study['wall_seconds']:.0f} s (of which "
                  f"{study.get('measure_seconds', 0):.0f} s measuring)."
                  + (f" Written {study['created']}." if study.get("created") else ""), ""]
    path = out / "scaling.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_scaling_figures(points: Sequence[Mapping[str, Any]],
                          plots_dir: str | os.PathLike) -> dict[str, str]:
    """Every figure of the study into ``plots_dir``; returns name -> file name."""
    plots = Path(plots_dir)
    figures = {}
    for key, label, stem in COSTS:
        path = plot_tradeoff(points, key, label, plots / f"top1_vs_{stem}.png")
        if path is not None:
            figures[f"top-1 vs {stem.replace('_', ' ')}"] = path.name
    path = plot_overfitting(points, plots / "overfitting.png")
    if path is not None:
        figures["over-fitting"] = path.name
    return figures


def write_scaling_outputs(study: Mapping[str, Any], out_dir: str | os.PathLike) -> Path:
    """Figures (``plots/``) and ``scaling.md`` of a study record; returns the report."""
    out = Path(out_dir)
    figures = write_scaling_figures(study["points"], out / "plots")
    return write_scaling_report(study, out, figures)


def rebuild_scaling_report(study_dir: str | os.PathLike) -> Path:
    """Rewrites the figures and ``scaling.md`` of a study folder from its ``scaling.json``.

    Raises:
        DataError: When the folder has no readable ``scaling.json``.
    """
    path = Path(study_dir) / "scaling.json"
    if not path.is_file():
        raise DataError(f"{study_dir} is not a scaling study (no scaling.json)")
    try:
        study = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(study, dict) or not isinstance(study.get("points"), list):
        raise DataError(f"{path}: expected an object with a list of points")
    return write_scaling_outputs(study, path.parent)


__all__ = ["COSTS", "equal_cost_rows", "interpolate_vanilla", "plot_overfitting", "vanilla_family",
           "plot_tradeoff", "points_table", "rebuild_scaling_report", "write_scaling_figures",
           "write_scaling_outputs", "write_scaling_report"]
