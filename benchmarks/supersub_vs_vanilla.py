"""Question 3: does Super-Sub beat the vanilla network (the paper: +3.3 points)?

Super-Sub: the generalist picks the superclass (stage 1), that superclass's delta
specialist picks the subclass (stage 2). For every bit width the run has, this gives the
validation top-1 of the vanilla network against Super-Sub with hard routing (top
superclass), top-k routing and oracle routing (true superclass given: stage 2 alone),
the differences in points, and where the pipeline's errors come from: the generalist's
superclass accuracy, the share of errors already made in stage 1, and stage 2's
accuracy on the images stage 1 routed right (``hard top-1 / stage-1 accuracy``; hard
routing can never beat stage 1's accuracy). Per superclass, the vanilla network's
accuracy against Super-Sub's (hard routing) at each bit width.

    python benchmarks/supersub_vs_vanilla.py                  # the default run (runs/default)
    python benchmarks/supersub_vs_vanilla.py --small          # the quick-profile run (minutes)
    python benchmarks/supersub_vs_vanilla.py --run runs/default   # read a run, never train

Full and small modes train or resume their run when it is incomplete (see
``benchmarks/common.py``). Prints the tables and writes JSON to
``benchmarks/results/supersub_vs_vanilla_<mode>.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import common

SCRIPT = "supersub_vs_vanilla"
PAPER_GAIN = 0.033  # Wen et al. 2022: Super-Sub over the vanilla network on ImageNet
ROUTINGS = ("hard", "topk", "oracle")


def compare(report: dict[str, Any], supersub: dict[str, dict],
            topk: int | None = None) -> dict[str, Any]:
    """Super-Sub at each bit width against the vanilla network.

    Args:
        report: The run's ``report.json`` (the vanilla network's analysis).
        supersub: ``supersub/<tag>.json`` contents by tag.
        topk: Superclasses of top-k routing (the run's ``deltas.topk``), for the record.
    """
    vanilla = report["analysis"].get("vanilla")
    if not vanilla:
        raise SystemExit("the run has no vanilla network analysis (report.json)")
    if not supersub:
        raise SystemExit("the run has no Super-Sub results (supersub/<bits>.json)")
    v_top1 = vanilla["top1"]
    systems = []
    for tag, result in supersub.items():
        routing = result["routing"]
        hard = routing["hard"]
        stage1 = hard["stage1_superclass_accuracy"]
        row = {"tag": tag, "bits": common.tag_bits(tag), "storage_a": result["storage"]["a"],
               "stage1_superclass_accuracy": stage1,
               "stage2_accuracy_when_routed_right": hard["top1"] / stage1 if stage1 else None}
        for r in ROUTINGS:
            row[f"{r}_top1"] = routing[r]["top1"]
            row[f"{r}_minus_vanilla"] = routing[r]["top1"] - v_top1
            row[f"{r}_errors"] = routing[r]["errors"]
            row[f"{r}_errors_from_stage1"] = routing[r]["errors_from_stage1"]
        systems.append(row)
    vanilla_sup = {r["superclass"]: r["fine_accuracy"] for r in vanilla["per_superclass"]}
    per_superclass = []
    for i, entry in enumerate(next(iter(supersub.values()))["routing"]["hard"]["per_superclass"]):
        name = entry["superclass"]
        per_superclass.append({
            "superclass": name, "images": entry["images"], "vanilla": vanilla_sup.get(name),
            **{f"{tag}_hard": r["routing"]["hard"]["per_superclass"][i]["top1"]
               for tag, r in supersub.items()},
            **{f"{tag}_oracle": r["routing"]["oracle"]["per_superclass"][i]["top1"]
               for tag, r in supersub.items()}})
    generalist = report["analysis"].get("generalist_vs_vanilla") or {}
    best = max(systems, key=lambda s: s["hard_top1"])
    return {
        "vanilla_top1": v_top1, "vanilla_errors": vanilla["errors"]["errors"],
        "vanilla_superclass_accuracy": vanilla["superclass_accuracy"],
        "generalist_superclass_accuracy": generalist.get("generalist"),
        "topk": topk, "systems": systems, "per_superclass": per_superclass,
        "best_hard": {"tag": best["tag"], "top1": best["hard_top1"],
                      "minus_vanilla": best["hard_minus_vanilla"]},
        "paper_gain": PAPER_GAIN,
    }


def print_comparison(result: dict[str, Any], topk: int, title: str) -> None:
    systems = result["systems"]
    rows = [["vanilla network", None, common.pct(result["vanilla_top1"]), None, None, None,
             None, None, None]]
    for s in systems:
        rows.append([f"Super-Sub, {s['tag']} deltas", f"{s['storage_a']:.3f}N + 1",
                     common.pct(s["hard_top1"]), common.pct(s["topk_top1"]),
                     common.pct(s["oracle_top1"]), common.points(s["hard_minus_vanilla"]),
                     common.points(s["topk_minus_vanilla"]),
                     common.points(s["oracle_minus_vanilla"]),
                     common.pct(s["hard_errors_from_stage1"])])
    common.print_table(title, ["system", "storage", "top-1 hard", f"top-1 top-{topk}",
                               "top-1 oracle", "hard - vanilla", f"top-{topk} - vanilla",
                               "oracle - vanilla", "hard errors from stage 1"], rows)
    best = result["best_hard"]
    print(f"Best hard routing: {best['tag']} deltas, {common.pct(best['top1'])}, "
          f"{common.points(best['minus_vanilla'])} points against the vanilla network "
          f"(the paper: {common.points(result['paper_gain'])} on ImageNet).")
    print()
    va = result["vanilla_superclass_accuracy"]
    common.print_table(
        f"Where the errors come from (superclass accuracy: generalist "
        f"{common.pct(result['generalist_superclass_accuracy'])}, vanilla network's top-1 "
        f"{common.pct(va['from_top1'])}, its summed probabilities "
        f"{common.pct(va['from_summed_probs'])})",
        ["system", "stage-1 accuracy", "hard errors", "from stage 1", "from stage 2",
         "stage 2 when routed right", f"top-{topk} errors from stage 1"],
        [[f"Super-Sub, {s['tag']} deltas", common.pct(s["stage1_superclass_accuracy"]),
          s["hard_errors"], round(s["hard_errors"] * s["hard_errors_from_stage1"]),
          round(s["hard_errors"] * (1 - s["hard_errors_from_stage1"])),
          common.pct(s["stage2_accuracy_when_routed_right"]),
          common.pct(s["topk_errors_from_stage1"])] for s in systems])
    tags = [s["tag"] for s in systems]
    common.print_table(
        "Per superclass: top-1 of the vanilla network, Super-Sub hard routing and oracle",
        ["superclass", "images", "vanilla", *[f"{t} hard" for t in tags],
         *[f"{t} oracle" for t in tags]],
        [[r["superclass"], r["images"], common.pct(r["vanilla"]),
          *[common.pct(r[f"{t}_hard"]) for t in tags],
          *[common.pct(r[f"{t}_oracle"]) for t in tags]] for r in result["per_superclass"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    info = common.ensure_run(common.run_overrides(args.small), run=args.run, wait=args.wait,
                             retrain=args.retrain)
    result = compare(info["report"], common.supersub_results(info["run_dir"]),
                     info["config"].deltas.topk)
    run = common.run_summary(info)
    print_comparison(result, result["topk"],
                     f"Super-Sub against the vanilla network, run {run['run_dir']} "
                     f"({run['backbone']['model']} x{run['backbone']['width']}, "
                     f"{run['epochs']} epochs)")
    path = common.write_result(SCRIPT, common.mode_name(args.small), {"run": run, **result},
                               started, args.output)
    print(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
