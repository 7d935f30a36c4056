"""The run report: one Markdown file (and its JSON twin) with every number and figure.

Sections follow the paper: the data, the networks, where the vanilla network's mistakes
fall (finding i), specialists against the vanilla network (finding ii), and the
generalist. Every number is read from the run's own files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from supersub_tf.atomic import atomic_write_text
from supersub_tf.data.summary import format_table
from supersub_tf.run.layout import RunLayout
from supersub_tf.supersub.routing import INFERENCE_ROUTINGS, MODES
from supersub_tf.tables import markdown_table, pct, points


NETWORK_HEADER = ["network", "classes", "parameters", "epochs", "steps", "train images",
                  "val top-1", "val top-5", "train s"]


def network_rows(networks: dict[str, dict]) -> list[list[Any]]:
    """Rows of the networks table from each network's ``metrics.json``."""
    return [[name, m["num_classes"], m["parameters"], m["epochs"], m.get("steps"),
             m["train_images"], m["top1"], m["top5"], round(m["train_seconds"])]
            for name, m in networks.items()]


def findings_section(analysis: dict[str, Any]) -> list[str]:
    """Markdown of the vanilla network's mistakes and the specialists comparison."""
    lines: list[str] = []
    figures = analysis.get("figures", {})
    vanilla = analysis.get("vanilla")
    if vanilla:
        errors, sup = vanilla["errors"], vanilla["superclass_accuracy"]
        lines += [
            "## Finding (i): where the vanilla network's mistakes fall",
            "",
            f"The vanilla network is wrong on {errors['errors']:,} of {vanilla['images']:,} "
            f"validation images (top-1 {pct(vanilla['top1'])}). "
            f"**{pct(errors['within_share'])} of its errors stay within the true "
            f"superclass** and {pct(errors['across_share'])} cross to another; a uniformly "
            f"random wrong guess would stay within {pct(errors['chance_within_share'])}.",
            "",
            f"Its superclass accuracy is {pct(sup['from_top1'])} from its top-1 fine "
            f"prediction and {pct(sup['from_summed_probs'])} from summed fine probabilities.",
            "",
        ]
        severity = vanilla["severity"]
        if severity.get("mean_wordnet_height") is not None:
            lines += [f"Mistake severity (Bertinetto et al. 2020): the mean height of the "
                      f"lowest common ancestor of true and predicted class in WordNet is "
                      f"{severity['mean_wordnet_height']:.2f} over the errors "
                      f"(two-level hierarchy: {severity['mean_hierarchy_height']:.2f}).", ""]
        for key in ("confusion_superclass", "confusion_fine", "misclassified"):
            if key in figures:
                lines += [f"![{key}](plots/{figures[key]})", ""]
        lines += ["Per superclass:", "", markdown_table(
            ["superclass", "images", "fine accuracy", "superclass accuracy", "within errors",
             "across errors"],
            [[r["superclass"], r["images"], r["fine_accuracy"], r["superclass_accuracy"],
              r["within_errors"], r["across_errors"]] for r in vanilla["per_superclass"]]), ""]
        lines += ["Most confused pairs:", "", markdown_table(
            ["true", "predicted", "count", "same superclass"],
            [[p["true_name"], p["predicted_name"], p["count"], "yes" if p["same_superclass"]
              else "no"] for p in vanilla["most_confused_pairs"]]), ""]
    rows = analysis.get("specialists_vs_vanilla")
    if rows:
        better = sum(r["specialist"] > r["vanilla_restricted"] for r in rows)
        lines += [
            "## Finding (ii): specialists against the vanilla network",
            "",
            "Each specialist is trained from scratch on one superclass and evaluated with the "
            "true superclass given (oracle). The vanilla network is scored on the same images, "
            "restricted to that superclass's subclasses (the fair comparison) and unrestricted. "
            "Compare the training budgets (epochs, optimizer steps) in the networks table.",
            f"Specialists beat the restricted vanilla network on {better} of {len(rows)} "
            "superclasses.",
            "",
            markdown_table(["superclass", "images", "specialist", "vanilla (restricted)",
                            "vanilla"],
                           [[r["superclass"], r["images"], r["specialist"],
                             r["vanilla_restricted"], r["vanilla"]] for r in rows]),
            "",
        ]
        if "specialists_vs_vanilla" in figures:
            lines += [f"![specialists vs vanilla](plots/{figures['specialists_vs_vanilla']})", ""]
    generalist = analysis.get("generalist_vs_vanilla")
    if generalist:
        lines += ["## The generalist", "",
                  f"Superclass accuracy: generalist {pct(generalist['generalist'])}, vanilla "
                  f"{pct(generalist['vanilla']['from_top1'])} (from its fine top-1) and "
                  f"{pct(generalist['vanilla']['from_summed_probs'])} (summed probabilities).",
                  ""]
    vanilla = analysis.get("vanilla") or {}
    lines += supersub_section(analysis.get("supersub") or {}, vanilla.get("top1"),
                              vanilla.get("per_superclass"))
    lines += export_section(analysis.get("export") or {})
    for key in ("training_curves", "specialist_curves"):
        if key in figures:
            lines += [f"![{key}](plots/{figures[key]})", ""]
    return lines


def supersub_section(results: dict[str, dict], vanilla_top1: float | None,
                     vanilla_per_superclass: list[dict] | None = None) -> list[str]:
    """Markdown of the Super-Sub pipeline against the vanilla network, per bit width:
    overall under each routing mode, then per superclass under hard routing."""
    if not results:
        return []
    passes = routing_rows(results)
    variants = [f"{tag}: " + ", ".join(v) for tag, r in results.items()
                if (v := variant_notes(r))]
    on_vanilla = any(r.get("base") == "vanilla" for r in results.values())
    design = (
        "The vanilla network is stage 1 (p(superclass) = its fine probabilities summed per "
        "superclass) and the trunk every specialist adapts: a specialist is the vanilla "
        "network plus its deltas, its head started from the vanilla head's rows of its "
        "superclass. Hard routing takes the top superclass, top-k combines the k most "
        "likely, soft all of them (p(fine) = p(s) * p(fine | s)), gated keeps the vanilla "
        "network's own answer when its top fine probability reaches tau and asks the top k "
        "specialists otherwise; oracle is given the true superclass."
        if on_vanilla else
        "A generalist predicts the superclass; that superclass's specialist (the "
        "generalist's weights plus its deltas) predicts the subclass (the paper's design). "
        "Hard routing takes the top superclass, top-k combines the k most likely, soft all "
        "of them; oracle is given the true superclass.")
    return ["## The Super-Sub pipeline", "",
            design + " Storage counts a float32 network as 1: a system of N specialists "
            "costs a*N + 1 networks instead of N + 1.", "",
            supersub_table(results, vanilla_top1), "",
            *([f"Variants of this system: {'; '.join(variants)}.", ""] if variants else []),
            *vanilla_comparison_lines(results),
            *(["Routing variants: accuracy against specialist passes per image (stage 1's "
               "pass not counted):", "",
               markdown_table(["system", "routing", "top-1", "specialist passes / image"],
                              passes), ""] if passes else []),
            "Per superclass (top-1, hard routing):", "",
            markdown_table(["superclass", "vanilla", *results],
                           per_superclass_rows(results, vanilla_per_superclass)), ""]


def supersub_table(results: dict[str, dict], vanilla_top1: float | None) -> str:
    """The markdown table of Super-Sub's top-1 under each routing mode (the registry's,
    :data:`~supersub_tf.supersub.routing.MODES`) per bit width, with the vanilla network,
    hard routing's errors from stage 1 and the storage factor: the report's main table,
    which the main job also logs."""
    rows = [["vanilla network", vanilla_top1, *[None] * (len(MODES) + 3)]]
    for tag, r in results.items():
        routing, storage = r["routing"], r["storage"]
        rows.append([f"Super-Sub, {tag} deltas",
                     *(routing[name]["top1"] if name in routing else None for name in MODES),
                     routing["hard"]["errors_from_stage1"], storage["a"],
                     storage["a_n_plus_1"]])
    return markdown_table(["system", *(f"top-1 {mode.label}" for mode in MODES.values()),
                           "errors from stage 1", "a", "a*N + 1"], rows)


def vanilla_comparison_lines(results: dict[str, dict]) -> list[str]:
    """Markdown of Super-Sub minus the run's vanilla network under each routing, what
    the specialists add over the vanilla network told the superclass, and the two
    optional combinations (specialist mixed with the vanilla network; routing by a
    generalist)."""
    rows, extra = [], []
    for tag, r in results.items():
        c = r.get("vanilla_comparison")
        if not c:
            continue
        base = c["vanilla_top1"]
        rows.append([f"{tag} deltas", base, c["vanilla_restricted_top1"],
                     r["routing"]["oracle"]["top1"], points(c.get("mean_oracle_gain")),
                     *(points(r["routing"][m]["top1"] - base) if m in r["routing"] else None
                       for m in INFERENCE_ROUTINGS)])
        mixed = c.get("mixed_with_vanilla")
        if mixed:
            extra.append(f"{tag}: stage 2 as {mixed['specialist_weight']:g} x specialist + "
                         f"{1 - mixed['specialist_weight']:g} x the vanilla network's "
                         f"renormalised block: {_by_routing(mixed['top1'])}.")
        by_generalist = c.get("generalist_routing")
        if by_generalist:
            extra.append(f"{tag}: routed by the run's generalist (superclass accuracy "
                         f"{by_generalist['stage1_superclass_accuracy']:.1%}, two networks at "
                         f"inference): {_by_routing(by_generalist['top1'])}.")
    for tag, r in results.items():
        compute = r.get("training_compute")
        if compute:
            extra.append(f"{tag}: training compute {compute['epochs_equivalent']:g} epochs of "
                         f"the training set ({compute['base']} {compute['base_epochs']:g} + "
                         f"specialists {compute['specialist_epochs_equivalent']:g}), "
                         f"{compute['train_seconds']:,.0f} s: the compute-matched baseline is "
                         f"a vanilla network trained {compute['epochs_equivalent']:g} epochs.")
    if not rows:
        return []
    return ["Against the vanilla network of this run (points; \"restricted\": the vanilla "
            "network told the true superclass, the bar a specialist must clear). The "
            "comparison at equal training compute (a vanilla network trained as many "
            "image passes, and an ensemble) is `benchmarks/equal_compute.py`'s.", "",
            markdown_table(["system", "vanilla", "vanilla restricted", "oracle",
                            "mean oracle gain",
                            *(f"{MODES[m].label} - vanilla" for m in INFERENCE_ROUTINGS)],
                           rows), "",
            *[f"- {line}" for line in extra], *([""] if extra else [])]


def _by_routing(top1: dict[str, float]) -> str:
    """``hard 45.1%, soft 47.0%``: top-1 by routing mode, in words."""
    return ", ".join(f"{mode} {value:.1%}" for mode, value in top1.items())


def variant_notes(result: dict[str, Any]) -> list[str]:
    """What a system does beyond the paper's Super-Sub (catch-all specialists, a
    generalist trained with an auxiliary fine head), in words; empty for neither."""
    notes = []
    if result.get("catch_all"):
        notes.append(f"catch-all specialists ({result['catch_all']:g} other-superclass "
                     "images per own image; routed blocks weighed by 1 - p(other))")
    if result.get("generalist_fine_head"):
        notes.append("generalist trained with an auxiliary fine head (loss weight "
                     f"{result['generalist_fine_head']:g})")
    return notes


def routing_rows(results: dict[str, dict]) -> list[list[Any]]:
    """One row per system and routing variant (and gated threshold) with its cost."""
    rows = []
    for tag, r in results.items():
        for name, m in r["routing"].items():
            if "specialist_passes" in m:
                label = f"gated, tau {r.get('gate_tau')}" if name == "gated" else name
                rows.append([f"{tag} deltas", label, m["top1"], m["specialist_passes"]])
        for point in r.get("gated_curve", []):
            rows.append([f"{tag} deltas", f"gated, tau {point['tau']:.2f}", point["top1"],
                         point["specialist_passes"]])
    return rows


def export_section(export: dict[str, Any]) -> list[str]:
    """Markdown of the exported system: sizes, agreement with Keras, accuracy and speed."""
    if not export:
        return []
    rows = [["Keras pipeline (reference)", None, export.get("keras_accuracy"), None, None]]
    saved = export.get("savedmodel")
    if saved:
        rows.append([f"SavedModel `{saved['path']}`", saved["sizes"]["savedmodel_bytes"],
                     saved["accuracy"], saved["fine_agreement"],
                     round(saved["images_per_second"])])
    lite = export.get("tflite")
    if lite:
        c = lite["comparison"]
        rows.append([f"LiteRT {c['quantization']} `{c['export']}`", lite["sizes"]["total_bytes"],
                     c.get("litert_accuracy"), c["fine_agreement"],
                     round(lite["speed"]["images_per_second"])])
    return ["## Export", "",
            f"The {export['bits']} system, exported and run on {export['images']:,} validation "
            "images with hard routing; agreement is the share of fine labels identical to the "
            "Keras pipeline's.", "",
            markdown_table(["form", "bytes", "top-1", "agreement with Keras", "images/s"], rows),
            ""]


def per_superclass_rows(results: dict[str, dict],
                        vanilla_per_superclass: list[dict] | None) -> list[list[Any]]:
    """One row per superclass: the vanilla network's and each system's top-1."""
    tags = list(results)
    first = results[tags[0]]["routing"]["hard"]["per_superclass"]
    vanilla = {r["superclass"]: r["fine_accuracy"] for r in vanilla_per_superclass or []}
    return [[row["superclass"], vanilla.get(row["superclass"])]
            + [results[t]["routing"]["hard"]["per_superclass"][i]["top1"] for t in tags]
            for i, row in enumerate(first)]


def write_report(run_dir: str | Path, title: str, data_summary: dict[str, Any],
                 preview: str | None, networks: dict[str, dict], analysis: dict[str, Any],
                 wall_seconds: float, notes: Sequence[str] = (),
                 legs: Sequence[float] = ()) -> Path:
    """Writes ``report.md`` and ``report.json`` into ``run_dir``; returns the Markdown path.

    ``wall_seconds`` is this invocation's time; ``legs`` the seconds of every invocation
    of a run that was interrupted and resumed (this one last), when there were several.
    """
    run_dir = Path(run_dir)
    lines = [f"# {title}", "", f"Dataset: {data_summary['dataset']}; hierarchy "
             f"`{data_summary['hierarchy']}`.", "", "## Data", "",
             format_table(data_summary, markdown=True), ""]
    lines += [f"{note}" for note in notes]
    if preview:
        lines += [f"![samples](plots/{preview})", ""]
    if networks:
        lines += ["## Networks", "", markdown_table(NETWORK_HEADER, network_rows(networks)), ""]
    lines += findings_section(analysis)
    lines += [f"Wall time of this run: {wall_seconds:.0f} s."
              + (f" Resumed or rerun: {sum(legs):.0f} s over {len(legs)} invocations "
                 f"({', '.join(f'{x:.0f}' for x in legs)} s; an interrupted one counts until "
                 "its last finished stage)." if len(legs) > 1 else ""), ""]
    layout = RunLayout(run_dir)
    path = layout.report
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(layout.report_json, json.dumps(
        {"data": data_summary, "networks": networks, "analysis": analysis,
         "wall_seconds": round(wall_seconds, 1),
         "wall_seconds_all_invocations": round(sum(legs) if legs else wall_seconds, 1),
         "invocations": max(1, len(legs))}, indent=2) + "\n")
    return path
