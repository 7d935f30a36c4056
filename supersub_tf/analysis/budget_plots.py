"""The budget study's figure and Markdown table (see :mod:`supersub_tf.studies.budget`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supersub_tf.analysis.plots import new_figure, save_figure
from supersub_tf.atomic import atomic_write_text
from supersub_tf.tables import markdown_table, pct, points

_STYLES = {"hard": ("tab:blue", "o"), "topk": ("tab:orange", "s"), "soft": ("tab:red", "D"),
           "gated": ("tab:green", "^")}


def _stage_one_accuracy(record: dict[str, Any]) -> float:
    """Stage 1's superclass accuracy (records made before it was recorded: the
    generalist's top-1, which is the same number)."""
    return record.get("stage1_superclass_accuracy") or record["generalist_top1"]


def plot_budget(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Super-Sub minus the point's vanilla network (solid) and minus the compute-matched
    vanilla network (dashed), in points of top-1, against the budget and against stage
    1's superclass accuracy, one colour per routing; zero is where they cross."""
    fig = new_figure(10.0, 4.0)
    by_budget, by_router = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    epochs = [r["epochs"] for r in records]
    stage_one = [100 * _stage_one_accuracy(r) for r in records]
    for routing, (color, marker) in _STYLES.items():
        for against, style, what in (("minus_vanilla", "-", "vanilla"),
                                     ("minus_compute_matched", "--", "matched")):
            diff = [100 * r["routing"][routing][against] for r in records
                    if against in r["routing"].get(routing, {})]
            if len(diff) != len(records):
                continue
            label = f"{routing} - {what}"
            by_budget.plot(epochs, diff, style, color=color, marker=marker, label=label)
            by_router.plot(stage_one, diff, style, color=color, marker=marker, label=label)
    for ax in (by_budget, by_router):
        ax.axhline(0.0, color="black", linewidth=0.8, label="no gain")
        ax.set_ylabel("Super-Sub minus vanilla (top-1 points)")
        ax.grid(alpha=0.3)
        ax.legend(title="routing - baseline", fontsize=6)  # each panel tells its lines apart
    by_budget.set_xscale("log", base=2)
    by_budget.set_xticks(epochs, [str(e) for e in epochs])
    by_budget.set_xlabel("training budget (epochs of each network)")
    by_router.set_xlabel("stage 1 superclass accuracy (%)")
    fig.tight_layout()
    return save_figure(fig, path)


def _points(difference: float) -> str:
    return f"{100 * difference:+.1f}"


def write_budget_report(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """``budget.md``: one row per budget, the crossover per routing, the figure."""
    rows = []
    for r in result["points"]:
        routing = r["routing"]
        matched = r.get("compute_matched_vanilla_top1")
        rows.append([r["epochs"], r["delta_epochs"], pct(r["vanilla_top1"]),
                     f"{pct(matched)} ({r['compute_matched_epochs']} ep.)" if matched else "-",
                     pct(_stage_one_accuracy(r)), pct(routing["hard"]["top1"]),
                     pct(routing.get("soft", {}).get("top1")),
                     pct(routing.get("gated", {}).get("top1")),
                     pct(routing["oracle"]["top1"]), pct(r["errors_from_stage1"]),
                     _points(routing["hard"]["minus_vanilla"]),
                     _points(routing.get("soft", routing["topk"])["minus_vanilla"]),
                     points(routing["hard"].get("minus_compute_matched")),
                     points(routing.get("soft", {}).get("minus_compute_matched"))])
    lines = [f"# Budget study `{result['name']}`", "",
             f"{result['dataset']} ({result['preset']}), {result['model']} "
             f"x{result['width']}, {result['image_size']} px; every network of a row gets "
             "that many epochs (the delta specialists their scaled fine-tuning epochs); the "
             "compute-matched vanilla network trains as many image passes as the row's "
             "whole Super-Sub system.", "",
             markdown_table(["epochs", "delta epochs", "vanilla", "compute-matched vanilla",
                             "stage 1 (superclass)", "Super-Sub hard", "soft", "gated",
                             "oracle", "errors from stage 1", "hard - vanilla",
                             "soft - vanilla", "hard - matched", "soft - matched"],
                            rows), ""]
    for routing, c in result["crossover"].items():
        won = ", ".join(map(str, c["budgets_won"])) or "none"
        at = ", ".join(f"{x:g}" for x in c["crossings_at_epochs"]) or "none"
        best = c.get("best_difference", c.get("best_minus_vanilla"))
        change = f"sign changes at about {at} epochs" if at != "none" else "no sign change"
        lines.append(f"- {routing}: Super-Sub ahead at budgets {won}; {change}; best "
                     f"difference {100 * best:+.1f} points.")
    lines += ["", f"Training time of all points: {result['train_seconds_all_points']:.0f} s.",
              "", "![Super-Sub minus vanilla](supersub_minus_vanilla.png)", ""]
    atomic_write_text(path, "\n".join(lines))
    return Path(path)
