"""The budget study's figure and Markdown table (see :mod:`supersub_tf.studies.budget`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from supersub_tf.analysis.plots import _new_figure, _save
from supersub_tf.atomic import atomic_write_text
from supersub_tf.tables import markdown_table, pct

_STYLES = {"hard": ("tab:blue", "o"), "topk": ("tab:orange", "s"), "gated": ("tab:green", "^")}


def plot_budget(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Super-Sub minus vanilla (points of top-1) against the budget and against the
    generalist's superclass accuracy, one line per routing; zero is where they cross."""
    fig = _new_figure(10.0, 4.0)
    by_budget, by_router = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    epochs = [r["epochs"] for r in records]
    generalist = [100 * r["generalist_top1"] for r in records]
    for routing, (color, marker) in _STYLES.items():
        diff = [100 * r["routing"][routing]["minus_vanilla"] for r in records
                if routing in r["routing"]]
        if len(diff) != len(records):
            continue
        by_budget.plot(epochs, diff, color=color, marker=marker, label=routing)
        by_router.plot(generalist, diff, color=color, marker=marker, label=routing)
    for ax in (by_budget, by_router):
        ax.axhline(0.0, color="black", linewidth=0.8, label="vanilla network (no gain)")
        ax.set_ylabel("Super-Sub minus vanilla (top-1 points)")
        ax.grid(alpha=0.3)
        ax.legend(title="Super-Sub routing", fontsize=7)  # each panel tells its lines apart
    by_budget.set_xscale("log", base=2)
    by_budget.set_xticks(epochs, [str(e) for e in epochs])
    by_budget.set_xlabel("training budget (epochs of each network)")
    by_router.set_xlabel("generalist superclass accuracy (%)")
    fig.tight_layout()
    return _save(fig, path)


def _points(difference: float) -> str:
    return f"{100 * difference:+.1f}"


def write_budget_report(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """``budget.md``: one row per budget, the crossover per routing, the figure."""
    rows = []
    for r in result["points"]:
        routing = r["routing"]
        rows.append([r["epochs"], r["delta_epochs"], pct(r["vanilla_top1"]),
                     pct(r["generalist_top1"]), pct(routing["hard"]["top1"]),
                     pct(routing["topk"]["top1"]), pct(routing.get("gated", {}).get("top1")),
                     pct(routing["oracle"]["top1"]), pct(r["errors_from_stage1"]),
                     _points(routing["hard"]["minus_vanilla"]),
                     _points(routing["topk"]["minus_vanilla"])])
    lines = [f"# Budget study `{result['name']}`", "",
             f"{result['dataset']} ({result['preset']}), {result['model']} "
             f"x{result['width']}, {result['image_size']} px; every network of a row gets "
             "that many epochs (the delta specialists their scaled fine-tuning epochs).", "",
             markdown_table(["epochs", "delta epochs", "vanilla", "generalist (superclass)",
                             "Super-Sub hard", "top-k", "gated", "oracle",
                             "errors from stage 1", "hard - vanilla", "top-k - vanilla"],
                            rows), ""]
    for routing, c in result["crossover"].items():
        won = ", ".join(map(str, c["budgets_won"])) or "none"
        at = ", ".join(f"{x:g}" for x in c["crossings_at_epochs"]) or "none"
        lines.append(f"- {routing}: Super-Sub ahead at budgets {won}; sign changes at "
                     f"about {at} epochs; best difference {100 * c['best_minus_vanilla']:+.1f} "
                     "points.")
    lines += ["", f"Training time of all points: {result['train_seconds_all_points']:.0f} s.",
              "", "![Super-Sub minus vanilla](supersub_minus_vanilla.png)", ""]
    atomic_write_text(path, "\n".join(lines))
    return Path(path)
